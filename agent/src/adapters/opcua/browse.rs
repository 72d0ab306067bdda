//! `weir-agent opcua browse`: the address space under a node, so a
//! technician can pick node ids, and the server certificate's SHA-256 to pin.

use std::path::Path;
use std::time::Duration;

use opcua::client::Session;
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, DataTypeId, Identifier,
    NodeClass, NodeId as UaNodeId, ReadValueId, ReferenceTypeId, TimestampsToReturn, Variant,
};
use weir_crds::gateway::OpcUaSettings;

use super::session::{self, Pki};
use super::values::node_id;

/// One node found under the start node.
#[derive(Debug, Clone)]
pub struct BrowsedNode {
    pub depth: u32,
    pub node_id: String,
    pub browse_name: String,
    pub node_class: String,
    /// Variables: the value's data type, and our `dataType` for it if any.
    pub data_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BrowseReport {
    /// Lower-case hex SHA-256 of the server's certificate, if it has one.
    pub server_certificate_sha256: Option<String>,
    pub nodes: Vec<BrowsedNode>,
}

/// Our `dataType` for an OPC UA built-in type.
fn our_type(t: DataTypeId) -> Option<&'static str> {
    Some(match t {
        DataTypeId::Boolean => "bool",
        DataTypeId::SByte | DataTypeId::Int16 => "int16",
        DataTypeId::Byte | DataTypeId::UInt16 => "uint16",
        DataTypeId::Int32 => "int32",
        DataTypeId::UInt32 => "uint32",
        DataTypeId::Int64 => "int64",
        DataTypeId::UInt64 => "uint64",
        DataTypeId::Float => "float32",
        DataTypeId::Double => "float64",
        DataTypeId::String | DataTypeId::LocalizedText => "string",
        _ => return None,
    })
}

fn type_name(v: &Variant) -> Option<String> {
    let Variant::NodeId(id) = v else { return None };
    if id.namespace == 0 {
        if let Identifier::Numeric(n) = id.identifier {
            if let Ok(t) = DataTypeId::try_from(n) {
                return Some(match our_type(t) {
                    Some(ours) => format!("{t:?} (dataType {ours})"),
                    None => format!("{t:?}"),
                });
            }
        }
    }
    Some(id.to_string())
}

/// The server certificate's SHA-256 as the server's endpoint list shows it.
pub async fn server_certificate(pki: &Pki, s: &OpcUaSettings) -> Result<Option<String>, String> {
    let timeout = Duration::from_millis(u64::from(s.timeout_ms.max(100)));
    let probe = session::client(pki, &pki.root, true, timeout, &s.endpoint)?;
    let e = session::find_endpoint(&probe, s, timeout).await?;
    let der = e.server_certificate.as_ref();
    Ok((!der.is_empty()).then(|| session::sha256_hex(der)))
}

async fn children(
    session: &Session,
    node: &UaNodeId,
    timeout: Duration,
) -> Result<Vec<(UaNodeId, String, NodeClass)>, String> {
    let d = BrowseDescription {
        node_id: node.clone(),
        browse_direction: BrowseDirection::Forward,
        reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
        include_subtypes: true,
        node_class_mask: 0,
        result_mask: BrowseResultMask::All as u32,
    };
    let r = tokio::time::timeout(timeout, session.browse(&[d], 0, None))
        .await
        .map_err(|_| "browse: no answer in time".to_string())?
        .map_err(|e| format!("browse {node}: {e}"))?;
    Ok(r.into_iter()
        .flat_map(|b| b.references.unwrap_or_default())
        .filter(|r| r.node_id.server_index == 0)
        .map(|r| {
            (
                r.node_id.node_id,
                r.browse_name.name.as_ref().to_string(),
                r.node_class,
            )
        })
        .collect())
}

async fn data_types(
    session: &Session,
    nodes: &[UaNodeId],
    timeout: Duration,
) -> Result<Vec<Option<String>>, String> {
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<ReadValueId> = nodes
        .iter()
        .map(|n| ReadValueId {
            node_id: n.clone(),
            attribute_id: AttributeId::DataType as u32,
            ..Default::default()
        })
        .collect();
    let r = tokio::time::timeout(
        timeout,
        session.read(&ids, TimestampsToReturn::Neither, 0.0),
    )
    .await
    .map_err(|_| "read: no answer in time".to_string())?
    .map_err(|e| format!("read data types: {e}"))?;
    Ok(r.iter()
        .map(|dv| dv.value.as_ref().and_then(type_name))
        .collect())
}

/// Most nodes one browse prints: a large server's address space would
/// otherwise run for minutes; `--node` narrows it.
pub const MAX_NODES: usize = 5000;

struct Walk<'a> {
    session: &'a Session,
    depth: u32,
    timeout: Duration,
    seen: std::collections::HashSet<UaNodeId>,
    out: Vec<BrowsedNode>,
}

impl Walk<'_> {
    /// Children of `node` in the server's order, each followed by its own.
    fn walk(
        &mut self,
        node: UaNodeId,
        d: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let kids = children(self.session, &node, self.timeout).await?;
            let vars: Vec<UaNodeId> = kids
                .iter()
                .filter(|k| k.2 == NodeClass::Variable)
                .map(|k| k.0.clone())
                .collect();
            let mut types = data_types(self.session, &vars, self.timeout)
                .await?
                .into_iter();
            for (id, name, class) in kids {
                if self.out.len() >= MAX_NODES || !self.seen.insert(id.clone()) {
                    continue;
                }
                let data_type = if class == NodeClass::Variable {
                    types.next().flatten()
                } else {
                    None
                };
                self.out.push(BrowsedNode {
                    depth: d,
                    node_id: id.to_string(),
                    browse_name: name,
                    node_class: format!("{class:?}"),
                    data_type,
                });
                if d + 1 < self.depth && matches!(class, NodeClass::Object | NodeClass::Variable) {
                    self.walk(id, d + 1).await?;
                }
            }
            Ok(())
        })
    }
}

/// Browse `depth` levels under `start` (default: the Objects folder).
pub async fn browse(
    data_dir: &Path,
    s: &OpcUaSettings,
    start: Option<&str>,
    depth: u32,
    credentials: Option<&std::sync::Arc<dyn super::CredentialSource>>,
) -> Result<BrowseReport, String> {
    let pki = Pki::new(data_dir);
    let timeout = Duration::from_millis(u64::from(s.timeout_ms.max(100)));
    let sha = server_certificate(&pki, s).await?;
    let conn = session::connect(&pki, s, credentials).await?;
    let start = match start {
        Some(n) => node_id(n)?,
        None => UaNodeId::new(0, 85u32),
    };
    let mut w = Walk {
        session: &conn.session,
        depth: depth.max(1),
        timeout,
        seen: Default::default(),
        out: Vec::new(),
    };
    let r = w.walk(start, 0).await;
    let nodes = std::mem::take(&mut w.out);
    drop(w);
    conn.close(timeout).await;
    r?;
    Ok(BrowseReport {
        server_certificate_sha256: sha,
        nodes,
    })
}
