//! OPC UA node ids as tag addresses, in the standard text form
//! `[ns=N;]i=NUMBER`, `s=STRING`, `g=GUID` or `b=BASE64` (OPC 10000-6 §5.3.1.10).
//!
//! - `ns`: namespace index 0..=65535, 0 when omitted.
//! - `i`: a numeric id 0..=4294967295.
//! - `s`: any non-empty string (it may hold `;`, `=` and `!`).
//! - `g`: a GUID `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex.
//! - `b`: an opaque id, standard base64 with padding.
//!
//! The agent hands the parsed parts to its OPC UA stack; the api and the
//! operator refuse a bad id with the reason before a bundle is signed.

use std::fmt;

/// The identifier part of a node id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identifier {
    Numeric(u32),
    String(String),
    /// The GUID's 16 bytes in its text order.
    Guid([u8; 16]),
    Opaque(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub namespace: u16,
    pub identifier: Identifier,
}

impl NodeId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (namespace, rest) = match s.strip_prefix("ns=") {
            Some(r) => {
                let (ns, rest) = r
                    .split_once(';')
                    .ok_or_else(|| format!("'{s}': 'ns=N' must be followed by ';'"))?;
                let ns = ns.parse::<u16>().map_err(|_| {
                    format!("'{s}': namespace index '{ns}' is not a number from 0 to 65535")
                })?;
                (ns, rest)
            }
            None => (0, s),
        };
        let (kind, value) = rest.split_once('=').ok_or_else(|| {
            format!("'{s}': an OPC UA node id reads [ns=N;]i=NUMBER, s=STRING, g=GUID or b=BASE64, e.g. ns=2;s=Pump1.Flow")
        })?;
        let identifier = match kind {
            "i" => Identifier::Numeric(value.parse::<u32>().map_err(|_| {
                format!("'{s}': numeric id '{value}' is not a number from 0 to 4294967295")
            })?),
            "s" if value.is_empty() => return Err(format!("'{s}': string id is empty")),
            "s" => Identifier::String(value.to_string()),
            "g" => Identifier::Guid(
                parse_guid(value)
                    .ok_or_else(|| format!("'{s}': GUID '{value}' does not read xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in hex"))?,
            ),
            "b" => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .map_err(|e| format!("'{s}': opaque id is not base64: {e}"))?;
                if bytes.is_empty() {
                    return Err(format!("'{s}': opaque id is empty"));
                }
                Identifier::Opaque(bytes)
            }
            other => {
                return Err(format!(
                    "'{s}': unknown identifier type '{other}=' (use i=, s=, g= or b=)"
                ))
            }
        };
        Ok(NodeId {
            namespace,
            identifier,
        })
    }
}

fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != 5 || groups.iter().zip(lens).any(|(g, l)| g.len() != l) {
        return None;
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace != 0 {
            write!(f, "ns={};", self.namespace)?;
        }
        match &self.identifier {
            Identifier::Numeric(n) => write!(f, "i={n}"),
            Identifier::String(s) => write!(f, "s={s}"),
            Identifier::Guid(g) => {
                let h: String = g.iter().map(|b| format!("{b:02x}")).collect();
                write!(
                    f,
                    "g={}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                )
            }
            Identifier::Opaque(b) => {
                use base64::Engine;
                write!(
                    f,
                    "b={}",
                    base64::engine::general_purpose::STANDARD.encode(b)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in [
            "ns=2;s=Pump1.Flow",
            "ns=2;i=1001",
            "i=2258",
            "s=Tank!Level;x=1",
            "ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63",
            "ns=1;b=M/RbKBsRVkePCePcx24oRA==",
        ] {
            let id = NodeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(id.to_string(), s);
        }
        assert_eq!(
            NodeId::parse("ns=2;i=7").unwrap(),
            NodeId {
                namespace: 2,
                identifier: Identifier::Numeric(7)
            }
        );
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        for (s, want) in [
            ("Pump1.Flow", "node id reads"),
            ("ns=70000;i=1", "namespace index"),
            ("ns=2", "followed by ';'"),
            ("ns=2;i=-1", "numeric id"),
            ("ns=2;s=", "string id is empty"),
            ("ns=2;g=1234", "GUID"),
            ("ns=2;b=***", "base64"),
            ("ns=2;x=1", "unknown identifier type 'x='"),
        ] {
            let e = NodeId::parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
