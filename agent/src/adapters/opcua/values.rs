//! OPC UA values and node ids to and from ours, by the tag's `dataType`.
//!
//! Values leave the adapter raw, as Modbus ones do: the pipeline applies
//! the tag's scale, offset and decimals. A write undoes scale and offset
//! before the value is typed for the server.

use opcua::types::{ByteString, Guid, Identifier, NodeId as UaNodeId, UAString, Variant};
use weir_crds::gateway::node_id::Identifier as OurIdentifier;
use weir_crds::gateway::{DataType, NodeId, Tag};
use weir_crds::message::TagValue;

/// Parse a tag address into the stack's node id.
pub fn node_id(address: &str) -> Result<UaNodeId, String> {
    let n = NodeId::parse(address)?;
    let id = match n.identifier {
        OurIdentifier::Numeric(i) => Identifier::Numeric(i),
        OurIdentifier::String(s) => Identifier::String(UAString::from(s)),
        OurIdentifier::Guid(b) => Identifier::Guid(Guid::from_bytes(guid_le(b))),
        OurIdentifier::Opaque(b) => Identifier::ByteString(ByteString::from(b)),
    };
    Ok(UaNodeId {
        namespace: n.namespace,
        identifier: id,
    })
}

/// Our GUID bytes are in text order; the stack's are Microsoft's, with
/// the first three fields little-endian.
fn guid_le(mut b: [u8; 16]) -> [u8; 16] {
    b[..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

fn as_i128(v: &Variant) -> Option<i128> {
    Some(match v {
        Variant::Boolean(b) => i128::from(*b),
        Variant::SByte(x) => i128::from(*x),
        Variant::Byte(x) => i128::from(*x),
        Variant::Int16(x) => i128::from(*x),
        Variant::UInt16(x) => i128::from(*x),
        Variant::Int32(x) => i128::from(*x),
        Variant::UInt32(x) => i128::from(*x),
        Variant::Int64(x) => i128::from(*x),
        Variant::UInt64(x) => i128::from(*x),
        Variant::Float(f) if f.fract() == 0.0 => *f as i128,
        Variant::Double(f) if f.fract() == 0.0 => *f as i128,
        _ => return None,
    })
}

fn as_f64(v: &Variant) -> Option<f64> {
    match v {
        Variant::Float(f) => Some(crate::adapters::codec::widen_f32(*f)),
        Variant::Double(f) => Some(*f),
        other => as_i128(other).map(|i| i as f64),
    }
}

/// A server's value as the tag's type; an error says why it does not fit.
pub fn from_variant(v: &Variant, dt: DataType) -> Result<TagValue, String> {
    let int = |lo: i128, hi: i128| -> Result<TagValue, String> {
        let i = as_i128(v).ok_or_else(|| format!("{:?} is not an integer", v.type_id()))?;
        if i < lo || i > hi {
            return Err(format!("{i} does not fit a {dt:?} tag"));
        }
        // JSON consumers read integers as i64; larger values go as floats.
        Ok(i64::try_from(i)
            .map(TagValue::Int)
            .unwrap_or(TagValue::Float(i as f64)))
    };
    match dt {
        DataType::Bool | DataType::Bit => match v {
            Variant::Boolean(b) => Ok(TagValue::Bool(*b)),
            other => as_i128(other)
                .map(|i| TagValue::Bool(i != 0))
                .ok_or_else(|| format!("{:?} is not a bool", other.type_id())),
        },
        DataType::Int16 => int(i16::MIN.into(), i16::MAX.into()),
        DataType::Uint16 => int(0, u16::MAX.into()),
        DataType::Int32 => int(i32::MIN.into(), i32::MAX.into()),
        DataType::Uint32 => int(0, u32::MAX.into()),
        DataType::Int64 => int(i64::MIN.into(), i64::MAX.into()),
        DataType::Uint64 => int(0, u64::MAX.into()),
        DataType::Float32 | DataType::Float64 => as_f64(v)
            .map(TagValue::Float)
            .ok_or_else(|| format!("{:?} is not a number", v.type_id())),
        DataType::String => match v {
            Variant::String(s) => Ok(TagValue::Text(s.as_ref().to_string())),
            Variant::LocalizedText(t) => Ok(TagValue::Text(t.text.as_ref().to_string())),
            other => Err(format!("{:?} is not a string", other.type_id())),
        },
    }
}

/// A value to write, typed as the tag's `dataType` (the server refuses a
/// write whose type differs from the node's with BadTypeMismatch).
pub fn to_variant(value: &TagValue, tag: &Tag) -> Result<Variant, String> {
    let dt = tag.data_type;
    let value = crate::adapters::raw_write_value(value, tag)?;
    let num = || -> Result<f64, String> {
        value
            .as_f64()
            .ok_or_else(|| format!("a {dt:?} tag needs a number, got {value:?}"))
    };
    let int = |lo: f64, hi: f64| -> Result<f64, String> {
        let n = num()?;
        if n.fract() != 0.0 {
            return Err(format!("{n} is not an integer (tag is {dt:?})"));
        }
        if n < lo || n > hi {
            return Err(format!("{n} does not fit a {dt:?} tag"));
        }
        Ok(n)
    };
    Ok(match dt {
        DataType::Bool | DataType::Bit => Variant::Boolean(num()? != 0.0),
        DataType::Int16 => Variant::Int16(int(i16::MIN.into(), i16::MAX.into())? as i16),
        DataType::Uint16 => Variant::UInt16(int(0.0, u16::MAX.into())? as u16),
        DataType::Int32 => Variant::Int32(int(i32::MIN.into(), i32::MAX.into())? as i32),
        DataType::Uint32 => Variant::UInt32(int(0.0, u32::MAX.into())? as u32),
        // Exact integers are kept exact (f64 would round above 2^53).
        DataType::Int64 => match value {
            TagValue::Int(i) => Variant::Int64(i),
            _ => Variant::Int64(int(i64::MIN as f64, i64::MAX as f64)? as i64),
        },
        DataType::Uint64 => match value {
            TagValue::Int(i) => Variant::UInt64(
                u64::try_from(i).map_err(|_| format!("{i} does not fit a Uint64 tag"))?,
            ),
            _ => Variant::UInt64(int(0.0, u64::MAX as f64)? as u64),
        },
        DataType::Float32 => Variant::Float(num()? as f32),
        DataType::Float64 => Variant::Double(num()?),
        DataType::String => match value {
            TagValue::Text(s) => Variant::String(UAString::from(s)),
            other => return Err(format!("a string tag needs text, got {other:?}")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(dt: DataType) -> Tag {
        serde_json::from_value(serde_json::json!({
            "name": "t", "address": "ns=2;s=x", "dataType": dt
        }))
        .unwrap()
    }

    #[test]
    fn node_ids_of_each_kind_convert() {
        assert_eq!(
            node_id("ns=2;s=Pump1.Flow").unwrap(),
            UaNodeId::new(2, "Pump1.Flow")
        );
        assert_eq!(node_id("i=85").unwrap(), UaNodeId::new(0, 85u32));
        let g = node_id("ns=1;g=72962b91-fa75-4ae6-8d28-b404dc7daf63").unwrap();
        assert_eq!(g.to_string(), "ns=1;g=72962b91-fa75-4ae6-8d28-b404dc7daf63");
        assert_eq!(node_id("ns=3;b=AQID").unwrap().to_string(), "ns=3;b=AQID");
        assert!(node_id("ns=x;i=1").unwrap_err().contains("namespace"));
    }

    #[test]
    fn server_values_take_the_tags_type() {
        let v = Variant::UInt64(u64::MAX);
        assert_eq!(
            from_variant(&v, DataType::Uint64).unwrap(),
            TagValue::Float(u64::MAX as f64)
        );
        assert!(from_variant(&Variant::Int32(70000), DataType::Int16)
            .unwrap_err()
            .contains("does not fit"));
        assert_eq!(
            from_variant(&Variant::Float(1.5), DataType::Float64).unwrap(),
            TagValue::Float(1.5)
        );
        assert!(from_variant(&Variant::from("x"), DataType::Int32).is_err());
    }

    #[test]
    fn writes_are_typed_and_unscaled() {
        let mut t = tag(DataType::Int32);
        assert_eq!(
            to_variant(&TagValue::Int(-5), &t).unwrap(),
            Variant::Int32(-5)
        );
        t.scale = Some(0.1);
        assert_eq!(
            to_variant(&TagValue::Float(2.5), &t).unwrap(),
            Variant::Int32(25)
        );
        let t = tag(DataType::Uint16);
        assert!(to_variant(&TagValue::Int(-1), &t)
            .unwrap_err()
            .contains("does not fit"));
        let t = tag(DataType::String);
        assert_eq!(
            to_variant(&TagValue::Text("on".into()), &t).unwrap(),
            Variant::from("on")
        );
    }
}
