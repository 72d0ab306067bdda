//! OPC UA status codes as the documented codes of a sample's `errors`.

use opcua::types::StatusCode;
use weir_crds::message::ErrorCode;

/// The `errors` code of a Bad value status.
pub fn code_of(status: StatusCode) -> ErrorCode {
    use StatusCode as S;
    // The sub-code: the low bits hold flags (overflow, limits) that do not
    // change what went wrong.
    let s = StatusCode::from(status.bits() & 0xFFFF_0000);
    match s {
        S::BadNodeIdUnknown | S::BadNodeIdInvalid | S::BadAttributeIdInvalid => {
            ErrorCode::NodeUnknown
        }
        S::BadUserAccessDenied | S::BadNotReadable | S::BadSecurityModeInsufficient => {
            ErrorCode::AccessDenied
        }
        S::BadTimeout | S::BadRequestTimeout => ErrorCode::Timeout,
        S::BadNotConnected
        | S::BadConnectionClosed
        | S::BadServerNotConnected
        | S::BadSessionIdInvalid
        | S::BadSessionClosed
        | S::BadSecureChannelClosed
        | S::BadCommunicationError
        | S::BadNoCommunication => ErrorCode::Disconnected,
        _ => ErrorCode::BadStatus,
    }
}

/// A status as people read it: its name and hex value.
pub fn describe(status: StatusCode) -> String {
    format!("{status} (0x{:08X})", status.bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_codes() {
        assert_eq!(
            code_of(StatusCode::BadNodeIdUnknown),
            ErrorCode::NodeUnknown
        );
        assert_eq!(
            code_of(StatusCode::BadUserAccessDenied),
            ErrorCode::AccessDenied
        );
        assert_eq!(code_of(StatusCode::BadTimeout), ErrorCode::Timeout);
        assert_eq!(code_of(StatusCode::BadSensorFailure), ErrorCode::BadStatus);
        assert_eq!(
            describe(StatusCode::BadTypeMismatch),
            "BadTypeMismatch (0x80740000)"
        );
    }
}
