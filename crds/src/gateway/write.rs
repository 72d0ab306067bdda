//! Whether a value may be written to a tag: the `write` attribute, the
//! tag's data type (a value that does not fit the device's raw type once
//! `scale` and `offset` are undone is refused), and the tag's optional
//! `writeMin`/`writeMax`. The api checks a setpoint write with this before
//! it publishes it, and the agent again before the value reaches the
//! device, so a config change between the two cannot let one through.

use super::{DataType, Tag, TagAttribute};
use crate::message::TagValue;

/// The value to send for a write of `value` to `tag`, or why it is refused
/// (in words an operator reads beside the value field). Bools also take
/// 0 and 1; whole-number types take a float without a fraction.
pub fn check_write(tag: &Tag, value: &TagValue) -> Result<TagValue, String> {
    if !tag.attributes.contains(&TagAttribute::Write) {
        return Err(format!(
            "tag '{}' is not writable (its attributes lack write)",
            tag.name
        ));
    }
    let value = of_type(tag, value)?;
    if let Some(n) = value.as_f64() {
        if let Some(min) = tag.write_min.filter(|m| n < *m) {
            return Err(format!(
                "{n} is below the tag's writeMin {min} (tag '{}')",
                tag.name
            ));
        }
        if let Some(max) = tag.write_max.filter(|m| n > *m) {
            return Err(format!(
                "{n} is above the tag's writeMax {max} (tag '{}')",
                tag.name
            ));
        }
    }
    Ok(value)
}

fn of_type(tag: &Tag, value: &TagValue) -> Result<TagValue, String> {
    let dt = tag.data_type;
    let kind = format!("{dt:?}").to_lowercase();
    match (dt, value) {
        (DataType::String, TagValue::Text(_)) => Ok(value.clone()),
        (DataType::String, _) => Err(format!("tag '{}' is a string: write text", tag.name)),
        (_, TagValue::Text(_)) => Err(format!(
            "tag '{}' is a {kind}: write a {}",
            tag.name,
            if matches!(dt, DataType::Bool | DataType::Bit) {
                "bool (true or false)"
            } else {
                "number"
            }
        )),
        (DataType::Bool | DataType::Bit, TagValue::Bool(_)) => Ok(value.clone()),
        (DataType::Bool | DataType::Bit, v) => match v.as_f64() {
            Some(n) if n == 0.0 || n == 1.0 => Ok(TagValue::Bool(n == 1.0)),
            _ => Err(format!(
                "tag '{}' is a {kind}: write true or false (or 1 or 0)",
                tag.name
            )),
        },
        (_, TagValue::Bool(_)) => Err(format!("tag '{}' is a {kind}: write a number", tag.name)),
        (_, v) => {
            let n = v.as_f64().unwrap_or(f64::NAN);
            let raw = (n - tag.offset.unwrap_or(0.0)) / tag.scale.unwrap_or(1.0);
            check_raw(tag, dt, &kind, n, raw)?;
            let scaled = tag.scale.is_some() || tag.offset.is_some();
            Ok(match v {
                // Whole-number types take 12.0 as 12 when nothing scales it.
                TagValue::Float(f) if !scaled && is_integer(dt) => TagValue::Int(*f as i64),
                _ => v.clone(),
            })
        }
    }
}

fn is_integer(dt: DataType) -> bool {
    !matches!(
        dt,
        DataType::Float32 | DataType::Float64 | DataType::Bool | DataType::Bit | DataType::String
    )
}

/// Whether the raw value (scale and offset undone) fits the device's type.
fn check_raw(tag: &Tag, dt: DataType, kind: &str, n: f64, raw: f64) -> Result<(), String> {
    let scaled = tag.scale.is_some() || tag.offset.is_some();
    if is_integer(dt) && !scaled && raw.fract() != 0.0 {
        return Err(format!(
            "tag '{}' is a {kind}: write a whole number, not {n}",
            tag.name
        ));
    }
    let (lo, hi) = match dt {
        DataType::Int16 => (i16::MIN as f64, i16::MAX as f64),
        DataType::Uint16 => (0.0, u16::MAX as f64),
        DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
        DataType::Uint32 => (0.0, u32::MAX as f64),
        DataType::Int64 => (i64::MIN as f64, i64::MAX as f64),
        DataType::Uint64 => (0.0, u64::MAX as f64),
        DataType::Float32 => (f32::MIN as f64, f32::MAX as f64),
        _ => (f64::MIN, f64::MAX),
    };
    let r = if is_integer(dt) { raw.round() } else { raw };
    if !r.is_finite() || r < lo || r > hi {
        let raw_note = if scaled {
            format!(" (raw {r} after scale and offset)")
        } else {
            String::new()
        };
        return Err(format!(
            "{n} does not fit the tag's type {kind}{raw_note} (tag '{}')",
            tag.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(json: serde_json::Value) -> Tag {
        let mut t = serde_json::json!({"name": "sp", "address": "1!400001", "attributes": ["read", "write"]});
        t.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(t).unwrap()
    }

    fn v(j: serde_json::Value) -> TagValue {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn the_write_attribute_is_needed() {
        let t = tag(serde_json::json!({"dataType": "float32", "attributes": ["read"]}));
        let e = check_write(&t, &TagValue::Float(1.0)).unwrap_err();
        assert!(e.contains("not writable"), "{e}");
    }

    #[test]
    fn limits_are_inclusive_and_named() {
        let t = tag(serde_json::json!({"dataType": "float32", "writeMin": 0.5, "writeMax": 4.0}));
        assert_eq!(
            check_write(&t, &v(serde_json::json!(0.5))),
            Ok(TagValue::Float(0.5))
        );
        assert_eq!(
            check_write(&t, &v(serde_json::json!(4))),
            Ok(TagValue::Int(4))
        );
        let low = check_write(&t, &v(serde_json::json!(0.49))).unwrap_err();
        assert!(low.contains("below the tag's writeMin 0.5"), "{low}");
        let high = check_write(&t, &v(serde_json::json!(4.01))).unwrap_err();
        assert!(high.contains("above the tag's writeMax 4"), "{high}");
    }

    #[test]
    fn values_must_fit_the_type() {
        let u16t = tag(serde_json::json!({"dataType": "uint16"}));
        assert_eq!(
            check_write(&u16t, &v(serde_json::json!(12.0))),
            Ok(TagValue::Int(12))
        );
        assert!(check_write(&u16t, &v(serde_json::json!(1.5)))
            .unwrap_err()
            .contains("whole number"));
        assert!(check_write(&u16t, &v(serde_json::json!(70000)))
            .unwrap_err()
            .contains("does not fit the tag's type uint16"));
        assert!(check_write(&u16t, &v(serde_json::json!(-1))).is_err());
        assert!(check_write(&u16t, &v(serde_json::json!("12")))
            .unwrap_err()
            .contains("write a number"));
        assert!(check_write(&u16t, &v(serde_json::json!(true))).is_err());
        // Scaled: 250.0 with scale 0.1 is raw 2500, which fits.
        let scaled = tag(serde_json::json!({"dataType": "int16", "scale": 0.1}));
        assert_eq!(
            check_write(&scaled, &v(serde_json::json!(25.05))),
            Ok(TagValue::Float(25.05))
        );
        let e = check_write(&scaled, &v(serde_json::json!(4000))).unwrap_err();
        assert!(e.contains("raw 40000"), "{e}");
        let b = tag(serde_json::json!({"dataType": "bool"}));
        assert_eq!(
            check_write(&b, &v(serde_json::json!(1))),
            Ok(TagValue::Bool(true))
        );
        assert_eq!(
            check_write(&b, &v(serde_json::json!(false))),
            Ok(TagValue::Bool(false))
        );
        assert!(check_write(&b, &v(serde_json::json!(2))).is_err());
        let s = tag(serde_json::json!({"dataType": "string"}));
        assert!(check_write(&s, &v(serde_json::json!(3)))
            .unwrap_err()
            .contains("write text"));
        assert_eq!(
            check_write(&s, &v(serde_json::json!("auto"))),
            Ok(TagValue::Text("auto".into()))
        );
    }
}
