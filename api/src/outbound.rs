//! Where the api may connect on a user's say-so (webhooks, SMTP servers,
//! adopted brokers): public addresses, plus private ranges only when the
//! operator lists them in `WEIR_OUTBOUND_ALLOW_CIDRS`. Without this a
//! webhook aimed at `http://127.0.0.1:port` turns "send test" into a port
//! scanner of the api's own network.
//!
//! The check is made on the address actually connected to (after DNS), so a
//! name that resolves to a refused address — or starts to, DNS rebinding —
//! does not get through: reqwest resolves through [`Resolver`], SMTP and
//! MQTT connect to what [`Policy::resolve`] returned.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// The environment variable (and flag) operators set; named in refusals.
pub const ALLOW_VAR: &str = "WEIR_OUTBOUND_ALLOW_CIDRS";

/// An address range `a.b.c.d/n` or `x::/n` (a bare address is /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(n.to_bits(), a.to_bits(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(n.to_bits(), a.to_bits(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq<T>(a: T, b: T, len: u8) -> bool
where
    T: Into<u128>,
{
    let (a, b, bits) = (a.into(), b.into(), 8 * std::mem::size_of::<T>() as u32);
    let len = u32::from(len);
    len == 0 || (a ^ b) >> (bits - len) == 0
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ip, len) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("'{s}' is not an address range (like 10.0.0.0/8)"))?;
        let net = canonical(net);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = if len.is_empty() {
            max
        } else {
            len.parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("'{s}': prefix length must be 0-{max}"))?
        };
        Ok(Cidr { net, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Loopback,
    LinkLocal,
    Private,
    Reserved,
    /// Never allowed, whatever the allow-list says.
    Metadata,
    Unspecified,
    Multicast,
    Broadcast,
}

impl Class {
    fn never(self) -> bool {
        matches!(
            self,
            Class::Metadata | Class::Unspecified | Class::Multicast | Class::Broadcast
        )
    }
    fn name(self) -> &'static str {
        match self {
            Class::Loopback => "a loopback address",
            Class::LinkLocal => "a link-local address",
            Class::Private => "a private address",
            Class::Reserved => "a reserved address",
            Class::Metadata => "a cloud metadata address",
            Class::Unspecified => "an unspecified address",
            Class::Multicast => "a multicast address",
            Class::Broadcast => "a broadcast address",
        }
    }
}

/// A refused target; its text names the address and the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub ip: IpAddr,
    pub class: Class,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.class.never() {
            write!(
                f,
                "{} is {}; outbound targets may never be one",
                self.ip,
                self.class.name()
            )
        } else {
            write!(
                f,
                "{} is {}; outbound targets must be public or in {ALLOW_VAR}",
                self.ip,
                self.class.name()
            )
        }
    }
}

impl std::error::Error for Refused {}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`) and NAT64 (`64:ff9b::/96`)
/// addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let b = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// The class of a non-public address; None for a public one.
pub fn classify(ip: IpAddr) -> Option<Class> {
    let in_ = |c: &str, ip: IpAddr| c.parse::<Cidr>().is_ok_and(|c| c.contains(ip));
    match canonical(ip) {
        IpAddr::V4(a) => {
            let ip = IpAddr::V4(a);
            Some(
                if a == Ipv4Addr::new(169, 254, 169, 254) || a == Ipv4Addr::new(100, 100, 100, 200)
                {
                    Class::Metadata
                } else if in_("0.0.0.0/8", ip) {
                    Class::Unspecified
                } else if a.is_broadcast() {
                    Class::Broadcast
                } else if a.is_multicast() {
                    Class::Multicast
                } else if a.is_loopback() {
                    Class::Loopback
                } else if a.is_link_local() {
                    Class::LinkLocal
                } else if a.is_private() || in_("100.64.0.0/10", ip) {
                    Class::Private
                } else if in_("240.0.0.0/4", ip)
                    || in_("192.0.0.0/24", ip)
                    || in_("198.18.0.0/15", ip)
                {
                    Class::Reserved
                } else {
                    return None;
                },
            )
        }
        IpAddr::V6(a) => {
            let ip = IpAddr::V6(a);
            Some(if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Class::Metadata
            } else if a.is_unspecified() {
                Class::Unspecified
            } else if a.is_multicast() {
                Class::Multicast
            } else if a.is_loopback() {
                Class::Loopback
            } else if in_("fe80::/10", ip) {
                Class::LinkLocal
            } else if in_("fc00::/7", ip) {
                Class::Private
            } else {
                return None;
            })
        }
    }
}

/// The outbound policy: which non-public ranges the operator allows.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allow: Arc<[Cidr]>,
}

impl Policy {
    pub fn new(allow: &[Cidr]) -> Self {
        Policy {
            allow: allow.into(),
        }
    }

    /// May the api connect to `ip`?
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        match classify(ip) {
            None => Ok(()),
            Some(class) if !class.never() && self.allow.iter().any(|c| c.contains(ip)) => Ok(()),
            Some(class) => Err(Refused { ip, class }),
        }
    }

    /// A host given as a literal address is judged now (names are judged
    /// when they are resolved). `host` may carry IPv6 brackets.
    pub fn check_literal(&self, host: &str) -> Result<(), Refused> {
        match host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
        {
            Ok(ip) => self.check(ip),
            Err(_) => Ok(()),
        }
    }

    /// Resolve `host:port` and keep the allowed addresses; none left is an
    /// error naming the first refusal (or the failed lookup).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_matches(|c| c == '[' || c == ']');
        let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| format!("cannot resolve {host}"))?
                .collect(),
        };
        let mut refused = None;
        let ok: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match self.check(a.ip()) {
                Ok(()) => true,
                Err(r) => {
                    refused.get_or_insert(r);
                    false
                }
            })
            .collect();
        match (ok.is_empty(), refused) {
            (false, _) => Ok(ok),
            (true, Some(r)) => Err(r.to_string()),
            (true, None) => Err(format!("cannot resolve {host}")),
        }
    }

    /// An HTTP client that connects only where this policy allows: names
    /// through [`Resolver`]; literal addresses must be checked by the caller
    /// with [`Policy::check_literal`] (reqwest does not resolve them). No
    /// redirects (they would leave the checked URL), no proxy.
    pub fn http_client(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(Resolver(self.clone())))
            .build()
    }
}

/// reqwest's resolver under a [`Policy`]: refused addresses are dropped,
/// and a name with only refused addresses fails with [`Refused`].
pub struct Resolver(pub Policy);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                if let Some(r) = refused {
                    return Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The [`Refused`] somewhere in an error's source chain.
pub fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classes() {
        for (a, c) in [
            ("127.0.0.1", Some(Class::Loopback)),
            ("::1", Some(Class::Loopback)),
            ("::ffff:127.0.0.1", Some(Class::Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(Class::Metadata)),
            ("169.254.169.254", Some(Class::Metadata)),
            ("fd00:ec2::254", Some(Class::Metadata)),
            ("100.100.100.200", Some(Class::Metadata)),
            ("169.254.1.1", Some(Class::LinkLocal)),
            ("fe80::1", Some(Class::LinkLocal)),
            ("0.0.0.0", Some(Class::Unspecified)),
            ("::", Some(Class::Unspecified)),
            ("224.0.0.1", Some(Class::Multicast)),
            ("ff02::1", Some(Class::Multicast)),
            ("255.255.255.255", Some(Class::Broadcast)),
            ("10.1.2.3", Some(Class::Private)),
            ("172.31.0.1", Some(Class::Private)),
            ("192.168.0.1", Some(Class::Private)),
            ("100.64.0.1", Some(Class::Private)),
            ("fd12::1", Some(Class::Private)),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("2001:db8::1", None),
        ] {
            assert_eq!(classify(ip(a)), c, "{a}");
        }
    }

    #[test]
    fn allow_list_opens_private_ranges_but_never_metadata() {
        let none = Policy::default();
        let p = Policy::new(&[
            "10.0.0.0/8".parse().unwrap(),
            "169.254.0.0/16".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]);
        assert!(none.check(ip("10.0.0.5")).is_err());
        assert!(p.check(ip("10.0.0.5")).is_ok());
        assert!(p.check(ip("11.0.0.5")).is_ok(), "public");
        assert!(p.check(ip("192.168.0.1")).is_err());
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(p.check(ip("127.0.0.2")).is_err());
        assert!(p.check(ip("169.254.3.3")).is_ok());
        let e = p.check(ip("169.254.169.254")).unwrap_err();
        assert_eq!(e.class, Class::Metadata);
        assert_eq!(
            none.check(ip("127.0.0.1")).unwrap_err().to_string(),
            "127.0.0.1 is a loopback address; outbound targets must be public or in WEIR_OUTBOUND_ALLOW_CIDRS"
        );
        assert!(p.check_literal("[::1]").is_err());
        assert!(p.check_literal("example.org").is_ok());
    }

    #[test]
    fn cidr_parsing() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        assert!(!all.contains(ip("::1")));
        assert_eq!("fc00::/7".parse::<Cidr>().unwrap().to_string(), "fc00::/7");
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let e = Policy::default()
            .resolve("localhost", 80)
            .await
            .unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let ok = Policy::new(&["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()])
            .resolve("localhost", 80)
            .await
            .unwrap();
        assert!(ok.iter().all(|a| a.ip().is_loopback()));
    }
}
