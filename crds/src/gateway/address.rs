//! Neuron-compatible Modbus addresses: `SLAVE!AREAADDRESS[.BIT|.LEN[H|L|D|E]][#ORDER]`.
//!
//! - `SLAVE`: unit id 0..=255.
//! - `AREA`: the first digit of the number: 0 coils, 1 discrete inputs,
//!   3 input registers, 4 holding registers. The rest is the 1-based register
//!   (`1!400001` is holding register 0 on the wire).
//! - `.BIT`: bit 0..=15 of a register, for data type `bit`.
//! - `.LEN` + `H|L|D|E`: string length in bytes and how characters sit in
//!   registers (H high byte first, L low byte first, D one char per register in
//!   the high byte, E one char per register in the low byte).
//! - `#ORDER`: `B`/`L` for 16-bit values (bytes big/little); two letters for
//!   32/64-bit values: word order then byte order (`BB` = ABCD, `BL` = BADC,
//!   `LB` = CDAB, `LL` = DCBA).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DataType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Area {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

impl Area {
    pub fn is_bit_area(self) -> bool {
        matches!(self, Area::Coil | Area::DiscreteInput)
    }
    pub fn writable(self) -> bool {
        matches!(self, Area::Coil | Area::HoldingRegister)
    }
}

/// Word order, then byte order within a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ByteOrder {
    pub words_big_endian: bool,
    pub bytes_big_endian: bool,
}

impl ByteOrder {
    pub const BIG: ByteOrder = ByteOrder {
        words_big_endian: true,
        bytes_big_endian: true,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StringLayout {
    /// Two chars per register, high byte first.
    H,
    /// Two chars per register, low byte first.
    L,
    /// One char per register, in the high byte.
    D,
    /// One char per register, in the low byte.
    E,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModbusAddress {
    pub slave: u8,
    pub area: Area,
    /// 0-based protocol address.
    pub register: u16,
    pub bit: Option<u8>,
    pub string_len: Option<u16>,
    pub string_layout: Option<StringLayout>,
    pub order: ByteOrder,
    /// Whether `#ORDER` was given (to check it matches the data type).
    pub order_letters: u8,
}

/// Why an address does not parse; the text is shown to people as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, AddressError> {
    Err(AddressError(msg.into()))
}

impl ModbusAddress {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let (slave, rest) = input.split_once('!').ok_or_else(|| {
            AddressError(format!(
                "'{input}' has no '!': write SLAVE!AREAADDRESS, e.g. 1!400001"
            ))
        })?;
        let slave: u8 = slave
            .parse()
            .map_err(|_| AddressError(format!("slave '{slave}' must be a number from 0 to 255")))?;
        let (body, order) = match rest.split_once('#') {
            Some((b, o)) => (b, Some(o)),
            None => (rest, None),
        };
        let (num, suffix) = match body.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (body, None),
        };
        if num.len() < 2 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return err(format!(
                "'{num}' must be an area digit (0, 1, 3 or 4) followed by a register number, e.g. 400001"
            ));
        }
        let area = match &num[..1] {
            "0" => Area::Coil,
            "1" => Area::DiscreteInput,
            "3" => Area::InputRegister,
            "4" => Area::HoldingRegister,
            a => return err(format!("area '{a}' is not one of 0 (coils), 1 (discrete inputs), 3 (input registers), 4 (holding registers)")),
        };
        let reg: u32 = num[1..]
            .parse()
            .map_err(|_| AddressError(format!("register '{}' is not a number", &num[1..])))?;
        if !(1..=65536).contains(&reg) {
            return err(format!(
                "register {reg} is outside 1..65536 (addresses are 1-based)"
            ));
        }
        let mut addr = ModbusAddress {
            slave,
            area,
            register: (reg - 1) as u16,
            bit: None,
            string_len: None,
            string_layout: None,
            order: ByteOrder::BIG,
            order_letters: 0,
        };
        if let Some(s) = suffix {
            let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
            let layout = &s[digits.len()..];
            let n: u16 = digits.parse().map_err(|_| {
                AddressError(format!("'.{s}' must be a bit number or a string length"))
            })?;
            match layout {
                "" => {
                    if n > 15 {
                        return err(format!("bit {n} is outside 0..15"));
                    }
                    addr.bit = Some(n as u8);
                }
                "H" | "L" | "D" | "E" => {
                    if n == 0 || n > 250 {
                        return err(format!("string length {n} is outside 1..250"));
                    }
                    addr.string_len = Some(n);
                    addr.string_layout = Some(match layout {
                        "H" => StringLayout::H,
                        "L" => StringLayout::L,
                        "D" => StringLayout::D,
                        _ => StringLayout::E,
                    });
                }
                other => {
                    return err(format!(
                        "'{other}' after the string length must be H, L, D or E"
                    ))
                }
            }
        }
        if let Some(o) = order {
            let big = |c: char| match c {
                'B' => Ok(true),
                'L' => Ok(false),
                _ => err(format!(
                    "byte order '#{o}' may only use the letters B and L"
                )),
            };
            let chars: Vec<char> = o.chars().collect();
            match chars.as_slice() {
                [b] => {
                    addr.order = ByteOrder {
                        words_big_endian: true,
                        bytes_big_endian: big(*b)?,
                    };
                }
                [w, b] => {
                    addr.order = ByteOrder {
                        words_big_endian: big(*w)?,
                        bytes_big_endian: big(*b)?,
                    };
                }
                _ => return err(format!("byte order '#{o}' must be B or L (16-bit) or two letters such as BB (32/64-bit)")),
            }
            addr.order_letters = chars.len() as u8;
        }
        Ok(addr)
    }

    /// Check that this address can hold a value of `data_type`.
    pub fn check_type(&self, data_type: DataType) -> Result<(), AddressError> {
        use DataType::*;
        if self.area.is_bit_area() && !matches!(data_type, Bool | Bit) {
            return err(format!(
                "{:?} hold single bits: use data type bool or bit",
                self.area
            ));
        }
        match data_type {
            Bit if !self.area.is_bit_area() && self.bit.is_none() => {
                return err("data type bit on a register needs a bit number, e.g. 1!400001.3")
            }
            String if self.string_len.is_none() => {
                return err("data type string needs a length and layout, e.g. 1!400010.20H")
            }
            _ => {}
        }
        if data_type != String && self.string_len.is_some() {
            return err("a string length is only allowed for data type string");
        }
        if data_type != Bit && self.bit.is_some() {
            return err("a bit number is only allowed for data type bit");
        }
        match (data_type.registers(), self.order_letters) {
            (_, 0) => {}
            (1, 1) if !matches!(data_type, Bool | Bit | String) => {}
            (2 | 4, 2) => {}
            (1, _) => return err("16-bit values take a one-letter byte order: #B or #L"),
            _ => {
                return err(
                    "32- and 64-bit values take a two-letter byte order: #BB, #BL, #LB or #LL",
                )
            }
        }
        Ok(())
    }

    /// Registers (or bits) the value occupies.
    pub fn quantity(&self, data_type: DataType) -> u16 {
        match (data_type, self.string_layout, self.string_len) {
            (DataType::String, Some(StringLayout::D | StringLayout::E), Some(n)) => n,
            (DataType::String, _, Some(n)) => n.div_ceil(2),
            _ => data_type.registers(),
        }
    }
}

impl fmt::Display for ModbusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let area = match self.area {
            Area::Coil => 0,
            Area::DiscreteInput => 1,
            Area::InputRegister => 3,
            Area::HoldingRegister => 4,
        };
        write!(
            f,
            "{}!{}{:05}",
            self.slave,
            area,
            u32::from(self.register) + 1
        )?;
        if let Some(b) = self.bit {
            write!(f, ".{b}")?;
        }
        if let (Some(n), Some(l)) = (self.string_len, self.string_layout) {
            write!(f, ".{n}{l:?}")?;
        }
        let l = |b: bool| if b { 'B' } else { 'L' };
        match self.order_letters {
            1 => write!(f, "#{}", l(self.order.bytes_big_endian)),
            2 => write!(
                f,
                "#{}{}",
                l(self.order.words_big_endian),
                l(self.order.bytes_big_endian)
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_neuron_addresses() {
        let a = ModbusAddress::parse("1!400001#BB").unwrap();
        assert_eq!((a.slave, a.area, a.register), (1, Area::HoldingRegister, 0));
        assert_eq!(a.order, ByteOrder::BIG);
        let a = ModbusAddress::parse("2!300010#LB").unwrap();
        assert_eq!((a.area, a.register), (Area::InputRegister, 9));
        assert!(!a.order.words_big_endian && a.order.bytes_big_endian);
        let a = ModbusAddress::parse("1!000005").unwrap();
        assert_eq!((a.area, a.register), (Area::Coil, 4));
        let a = ModbusAddress::parse("1!400003.7").unwrap();
        assert_eq!(a.bit, Some(7));
        let a = ModbusAddress::parse("1!400020.16H").unwrap();
        assert_eq!(
            (a.string_len, a.string_layout),
            (Some(16), Some(StringLayout::H))
        );
        assert_eq!(a.quantity(DataType::String), 8);
        assert_eq!(a.to_string(), "1!400020.16H");
        assert_eq!(
            ModbusAddress::parse("1!400001#LL").unwrap().to_string(),
            "1!400001#LL"
        );
    }

    #[test]
    fn rejects_bad_addresses_with_reasons() {
        for (bad, want) in [
            ("400001", "no '!'"),
            ("300!400001", "slave '300'"),
            ("1!200001", "area '2'"),
            ("1!400000", "1-based"),
            ("1!400001.16", "bit 16"),
            ("1!400001#X", "letters B and L"),
            ("1!400001#BBB", "two letters"),
        ] {
            let e = ModbusAddress::parse(bad).unwrap_err().0;
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn checks_type_against_address() {
        let coil = ModbusAddress::parse("1!000001").unwrap();
        assert!(coil.check_type(DataType::Bool).is_ok());
        assert!(coil.check_type(DataType::Float32).is_err());
        let reg = ModbusAddress::parse("1!400001#BB").unwrap();
        assert!(reg.check_type(DataType::Float32).is_ok());
        assert!(reg
            .check_type(DataType::Int16)
            .unwrap_err()
            .0
            .contains("one-letter"));
        assert!(ModbusAddress::parse("1!400001")
            .unwrap()
            .check_type(DataType::Bit)
            .is_err());
        assert!(ModbusAddress::parse("1!400001")
            .unwrap()
            .check_type(DataType::String)
            .is_err());
    }
}
