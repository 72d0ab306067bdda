//! Modbus register ⇄ value conversion for every data type and byte order of
//! the Neuron address syntax.
//!
//! Registers arrive as big-endian 16-bit words (Modbus wire order). For a
//! value of N words, `#XY` says X: word order (B = most significant word
//! first), Y: byte order inside each word (B = high byte first). So `BB` is
//! ABCD, `BL` BADC, `LB` CDAB, `LL` DCBA.

use weir_crds::gateway::address::{ByteOrder, ModbusAddress, StringLayout};
use weir_crds::gateway::DataType;
use weir_crds::message::TagValue;

/// Bytes of `words` in value order (most significant first).
fn ordered_bytes(words: &[u16], order: ByteOrder) -> Vec<u8> {
    let mut ws: Vec<u16> = words.to_vec();
    if !order.words_big_endian {
        ws.reverse();
    }
    let mut out = Vec::with_capacity(ws.len() * 2);
    for w in ws {
        let [hi, lo] = w.to_be_bytes();
        if order.bytes_big_endian {
            out.extend_from_slice(&[hi, lo]);
        } else {
            out.extend_from_slice(&[lo, hi]);
        }
    }
    out
}

/// Inverse of [`ordered_bytes`].
fn words_from_bytes(bytes: &[u8], order: ByteOrder) -> Vec<u16> {
    let mut ws: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let (a, b) = (c[0], *c.get(1).unwrap_or(&0));
            if order.bytes_big_endian {
                u16::from_be_bytes([a, b])
            } else {
                u16::from_be_bytes([b, a])
            }
        })
        .collect();
    if !order.words_big_endian {
        ws.reverse();
    }
    ws
}

/// Decode a register value. `words` has exactly `addr.quantity(dt)` words.
pub fn decode_registers(
    words: &[u16],
    addr: &ModbusAddress,
    dt: DataType,
) -> Result<TagValue, String> {
    let need = addr.quantity(dt) as usize;
    if words.len() < need {
        return Err(format!("need {need} registers, got {}", words.len()));
    }
    let w = &words[..need];
    let b = ordered_bytes(w, addr.order);
    Ok(match dt {
        DataType::Bool => TagValue::Bool(w[0] != 0),
        DataType::Bit => TagValue::Bool(w[0] >> addr.bit.unwrap_or(0) & 1 == 1),
        DataType::Int16 => TagValue::Int(i64::from(i16::from_be_bytes([b[0], b[1]]))),
        DataType::Uint16 => TagValue::Int(i64::from(u16::from_be_bytes([b[0], b[1]]))),
        DataType::Int32 => {
            TagValue::Int(i64::from(i32::from_be_bytes(b[..4].try_into().expect("4"))))
        }
        DataType::Uint32 => {
            TagValue::Int(i64::from(u32::from_be_bytes(b[..4].try_into().expect("4"))))
        }
        DataType::Float32 => {
            TagValue::Float(widen_f32(f32::from_be_bytes(b[..4].try_into().expect("4"))))
        }
        DataType::Int64 => TagValue::Int(i64::from_be_bytes(b[..8].try_into().expect("8"))),
        DataType::Uint64 => {
            let v = u64::from_be_bytes(b[..8].try_into().expect("8"));
            // JSON consumers read integers as i64; larger values go as floats.
            i64::try_from(v)
                .map(TagValue::Int)
                .unwrap_or(TagValue::Float(v as f64))
        }
        DataType::Float64 => TagValue::Float(f64::from_be_bytes(b[..8].try_into().expect("8"))),
        DataType::String => TagValue::Text(decode_string(w, addr)),
    })
}

/// A float32 as the f64 of its shortest decimal: the register holding
/// 3.14159 reads as 3.14159, not as 3.141590118408203 (the f32's exact binary
/// value, which `f64::from` keeps and every table and summary would show).
/// Writing the value back (`as f32`) gives the same f32 again.
pub fn widen_f32(x: f32) -> f64 {
    use std::io::Write;
    if !x.is_finite() {
        return f64::from(x);
    }
    // `{:e}` is the shortest round-trip form, at most 15 bytes for an f32.
    let mut buf = [0u8; 32];
    let mut w = &mut buf[..];
    if write!(w, "{x:e}").is_err() {
        return f64::from(x);
    }
    let len = 32 - w.len();
    std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::from(x))
}

fn decode_string(words: &[u16], addr: &ModbusAddress) -> String {
    let len = addr.string_len.unwrap_or(0) as usize;
    let mut bytes = Vec::with_capacity(len);
    for w in words {
        let [hi, lo] = w.to_be_bytes();
        match addr.string_layout.unwrap_or(StringLayout::H) {
            StringLayout::H => bytes.extend_from_slice(&[hi, lo]),
            StringLayout::L => bytes.extend_from_slice(&[lo, hi]),
            StringLayout::D => bytes.push(hi),
            StringLayout::E => bytes.push(lo),
        }
    }
    bytes.truncate(len);
    // PLC strings are padded with NULs (or spaces).
    while bytes.last().is_some_and(|b| *b == 0) {
        bytes.pop();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Encode a value for writing to registers (inverse of [`decode_registers`]).
/// `current` is the register's present value, needed for `bit` writes.
pub fn encode_registers(
    value: &TagValue,
    addr: &ModbusAddress,
    dt: DataType,
    current: Option<u16>,
) -> Result<Vec<u16>, String> {
    let num = || -> Result<f64, String> {
        value
            .as_f64()
            .ok_or_else(|| format!("a {dt:?} tag needs a number, got {value:?}"))
    };
    let int = || -> Result<i128, String> {
        let n = num()?;
        if n.fract() != 0.0 {
            return Err(format!("a {dt:?} tag needs a whole number, got {n}"));
        }
        Ok(n as i128)
    };
    let range = |v: i128, lo: i128, hi: i128| -> Result<i128, String> {
        if v < lo || v > hi {
            Err(format!("{v} does not fit a {dt:?} tag"))
        } else {
            Ok(v)
        }
    };
    let bytes: Vec<u8> = match dt {
        DataType::Bool => return Ok(vec![u16::from(num()? != 0.0)]),
        DataType::Bit => {
            let bit = addr.bit.unwrap_or(0);
            let cur = current.ok_or("writing a bit needs the register's current value")?;
            let on = num()? != 0.0;
            let v = if on {
                cur | (1 << bit)
            } else {
                cur & !(1 << bit)
            };
            return Ok(vec![v]);
        }
        DataType::Int16 => (range(int()?, i16::MIN.into(), i16::MAX.into())? as i16)
            .to_be_bytes()
            .to_vec(),
        DataType::Uint16 => (range(int()?, 0, u16::MAX.into())? as u16)
            .to_be_bytes()
            .to_vec(),
        DataType::Int32 => (range(int()?, i32::MIN.into(), i32::MAX.into())? as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::Uint32 => (range(int()?, 0, u32::MAX.into())? as u32)
            .to_be_bytes()
            .to_vec(),
        DataType::Int64 => (range(int()?, i64::MIN.into(), i64::MAX.into())? as i64)
            .to_be_bytes()
            .to_vec(),
        DataType::Uint64 => (range(int()?, 0, u64::MAX.into())? as u64)
            .to_be_bytes()
            .to_vec(),
        DataType::Float32 => (num()? as f32).to_be_bytes().to_vec(),
        DataType::Float64 => num()?.to_be_bytes().to_vec(),
        DataType::String => {
            let TagValue::Text(s) = value else {
                return Err(format!("a string tag needs text, got {value:?}"));
            };
            return Ok(encode_string(s, addr));
        }
    };
    Ok(words_from_bytes(&bytes, addr.order))
}

fn encode_string(s: &str, addr: &ModbusAddress) -> Vec<u16> {
    let len = addr.string_len.unwrap_or(0) as usize;
    let mut bytes = s.as_bytes().to_vec();
    bytes.resize(len, 0);
    match addr.string_layout.unwrap_or(StringLayout::H) {
        StringLayout::H => bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
            .collect(),
        StringLayout::L => bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([*c.get(1).unwrap_or(&0), c[0]]))
            .collect(),
        StringLayout::D => bytes.iter().map(|b| u16::from(*b) << 8).collect(),
        StringLayout::E => bytes.iter().map(|b| u16::from(*b)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> ModbusAddress {
        ModbusAddress::parse(s).unwrap()
    }

    #[test]
    fn float32_reads_as_its_shortest_decimal() {
        for (x, shown) in [
            (4.25317f32, 4.25317),
            (0.1, 0.1),
            (-273.15, -273.15),
            (1.0e-38, 1e-38),
            (f32::MAX, 3.4028235e38),
            (16_777_217.0, 16_777_216.0),
        ] {
            let v = widen_f32(x);
            assert_eq!(v, shown);
            assert_eq!(v as f32, x, "{shown} must write back as the same f32");
        }
        assert!(widen_f32(f32::NAN).is_nan());
        assert_eq!(widen_f32(f32::INFINITY), f64::INFINITY);
    }

    #[test]
    fn float32_in_every_byte_order() {
        // 123.456f32 = 0x42F6E979: A=42 B=F6 C=E9 D=79
        let cases = [
            ("1!400001#BB", [0x42F6, 0xE979]), // ABCD
            ("1!400001#BL", [0xF642, 0x79E9]), // BADC
            ("1!400001#LB", [0xE979, 0x42F6]), // CDAB
            ("1!400001#LL", [0x79E9, 0xF642]), // DCBA
        ];
        for (a, words) in cases {
            let a = addr(a);
            let v = decode_registers(&words, &a, DataType::Float32).unwrap();
            assert_eq!(v, TagValue::Float(123.456), "{a}");
            assert_eq!(
                encode_registers(&v, &a, DataType::Float32, None).unwrap(),
                words.to_vec()
            );
        }
    }

    #[test]
    fn integers_and_sixteen_bit_orders() {
        assert_eq!(
            decode_registers(&[0xFFFE], &addr("1!400001"), DataType::Int16).unwrap(),
            TagValue::Int(-2)
        );
        assert_eq!(
            decode_registers(&[0xFFFE], &addr("1!400001"), DataType::Uint16).unwrap(),
            TagValue::Int(65534)
        );
        assert_eq!(
            decode_registers(&[0x3412], &addr("1!400001#L"), DataType::Uint16).unwrap(),
            TagValue::Int(0x1234)
        );
        assert_eq!(
            decode_registers(&[0x0001, 0x0000], &addr("1!400001#LB"), DataType::Uint32).unwrap(),
            TagValue::Int(1)
        );
        let a = addr("1!400001#BB");
        let v = TagValue::Int(-123_456_789_012);
        let w = encode_registers(&v, &a, DataType::Int64, None).unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(decode_registers(&w, &a, DataType::Int64).unwrap(), v);
        let a = addr("1!400001#LL");
        let v = TagValue::Float(-0.000123);
        let w = encode_registers(&v, &a, DataType::Float64, None).unwrap();
        assert_eq!(decode_registers(&w, &a, DataType::Float64).unwrap(), v);
        assert!(encode_registers(
            &TagValue::Int(70_000),
            &addr("1!400001"),
            DataType::Int16,
            None
        )
        .is_err());
        assert!(encode_registers(
            &TagValue::Float(1.5),
            &addr("1!400001"),
            DataType::Int16,
            None
        )
        .is_err());
    }

    #[test]
    fn bits_and_strings() {
        assert_eq!(
            decode_registers(&[0b1000], &addr("1!400001.3"), DataType::Bit).unwrap(),
            TagValue::Bool(true)
        );
        assert_eq!(
            decode_registers(&[0b1000], &addr("1!400001.2"), DataType::Bit).unwrap(),
            TagValue::Bool(false)
        );
        assert_eq!(
            encode_registers(
                &TagValue::Bool(true),
                &addr("1!400001.2"),
                DataType::Bit,
                Some(0b1000)
            )
            .unwrap(),
            vec![0b1100]
        );
        for layout in ["H", "L", "D", "E"] {
            let a = addr(&format!("1!400010.5{layout}"));
            let w = encode_string("PUMP1", &a);
            assert_eq!(w.len(), a.quantity(DataType::String) as usize);
            assert_eq!(
                decode_registers(&w, &a, DataType::String).unwrap(),
                TagValue::Text("PUMP1".into())
            );
        }
        assert_eq!(
            decode_registers(&[0x4142, 0x4300], &addr("1!400010.4H"), DataType::String).unwrap(),
            TagValue::Text("ABC".into())
        );
    }
}
