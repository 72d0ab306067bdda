//! Runtime configuration. Every flag has a `WEIR_*` environment variable and a
//! default that runs on a developer machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address and port the HTTP server listens on.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://FILE?mode=rwc` (embedded default) or `postgres://...`.
    #[arg(
        long,
        env = "WEIR_DATABASE_URL",
        default_value = "sqlite://weir.db?mode=rwc"
    )]
    pub database_url: String,

    /// Email of the first system administrator, created on first start with an empty database.
    #[arg(
        long,
        env = "WEIR_BOOTSTRAP_ADMIN_EMAIL",
        default_value = "admin@weir.local"
    )]
    pub bootstrap_admin_email: String,

    /// Password of the first system administrator. Without it a one-time password is printed once.
    #[arg(long, env = "WEIR_BOOTSTRAP_ADMIN_PASSWORD", hide_env_values = true)]
    pub bootstrap_admin_password: Option<String>,

    /// External URL of the api (used for OIDC redirects and to mark cookies Secure when https).
    #[arg(long, env = "WEIR_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,

    /// Directory with the built web console, served at `/` with SPA fallback.
    #[arg(long, env = "WEIR_WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,

    /// Session lifetime in seconds.
    #[arg(long, env = "WEIR_SESSION_TTL_SECS", default_value_t = 12 * 3600)]
    pub session_ttl_secs: u64,

    /// How often expired sessions (and abandoned SSO sign-ins) are deleted,
    /// in seconds; 0 turns the purge off.
    #[arg(long, env = "WEIR_SESSION_PURGE_INTERVAL_SECS", default_value_t = 3600)]
    pub session_purge_interval_secs: u64,

    /// Failed logins in a row from one address to one account before that
    /// address is locked out of that account (never the account as a whole).
    #[arg(long, env = "WEIR_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,

    /// How long such a lock lasts, and the window over which an account's
    /// failures (from any address) slow its sign-ins, in seconds.
    #[arg(long, env = "WEIR_LOGIN_LOCKOUT_SECS", default_value_t = 900)]
    pub login_lockout_secs: u64,

    /// Delay before checking a password, per failure the account had in the
    /// last `login_lockout_secs` (at most 3 s), in milliseconds.
    #[arg(long, env = "WEIR_LOGIN_FAILURE_DELAY_MS", default_value_t = 250)]
    pub login_failure_delay_ms: u64,

    /// Failed sign-ins one client address may make in a burst, whatever the
    /// accounts (then 429 with Retry-After).
    #[arg(long, env = "WEIR_LOGIN_ADDR_BURST", default_value_t = 20)]
    pub login_addr_burst: u32,

    /// Failed sign-ins per minute one client address regains after a burst.
    #[arg(long, env = "WEIR_LOGIN_ADDR_PER_MIN", default_value_t = 10)]
    pub login_addr_per_min: u32,

    /// Password hashes (argon2, ~19 MiB each) computed at once.
    #[arg(long, env = "WEIR_LOGIN_MAX_CONCURRENT_HASHES", default_value_t = 4)]
    pub login_max_concurrent_hashes: usize,

    /// How long a sign-in waits for a free hash slot before it is answered
    /// 429, in milliseconds.
    #[arg(long, env = "WEIR_LOGIN_HASH_WAIT_MS", default_value_t = 1000)]
    pub login_hash_wait_ms: u64,

    /// Failed and refused sign-ins of one account from one address within
    /// this many seconds make one audit entry (plus the first failure's own).
    #[arg(long, env = "WEIR_LOGIN_AUDIT_WINDOW_SECS", default_value_t = 300)]
    pub login_audit_window_secs: u64,

    /// Most addresses, account/address pairs and accounts the sign-in
    /// throttle remembers (each); the least recently seen are forgotten first.
    #[arg(
        long,
        env = "WEIR_LOGIN_THROTTLE_MAX_ENTRIES",
        default_value_t = 10_000
    )]
    pub login_throttle_max_entries: usize,

    /// Largest accepted request body, in bytes: room for the largest
    /// gateway spec the schema allows (about 0.85 MB of JSON).
    #[arg(long, env = "WEIR_BODY_LIMIT_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Most database connections in the pool.
    #[arg(long, env = "WEIR_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Private address ranges (comma-separated CIDRs, e.g. `10.0.0.0/8`)
    /// that webhooks, SMTP servers and adopted brokers may be in. Other
    /// non-public addresses (loopback, link-local, private) are refused
    /// unless listed; metadata, unspecified, multicast and broadcast
    /// addresses always are refused.
    #[arg(
        long,
        env = "WEIR_OUTBOUND_ALLOW_CIDRS",
        value_delimiter = ',',
        num_args = 0..
    )]
    pub outbound_allow_cidrs: Vec<crate::outbound::Cidr>,

    /// Reverse proxies (comma-separated CIDRs, e.g. the ingress
    /// controller's pods) whose `X-Forwarded-For` names the client: the
    /// right-most address in it that is not such a proxy is the client, for
    /// the sign-in limits and the audit log. Empty: the connecting address
    /// is the client and the header is ignored (anyone could forge it).
    #[arg(
        long,
        env = "WEIR_TRUSTED_PROXIES",
        value_delimiter = ',',
        num_args = 0..
    )]
    pub trusted_proxies: Vec<crate::outbound::Cidr>,

    #[command(flatten)]
    pub oidc: OidcConfig,

    /// Watch Kubernetes `Tenant` resources and keep matching organizations
    /// (auto: only when in-cluster or KUBECONFIG config is found).
    #[arg(long, env = "WEIR_KUBE_TENANTS", default_value = "auto")]
    pub kube_tenants: KubeTenants,

    #[command(flatten)]
    pub fleet: crate::fleet::FleetConfig,

    #[command(flatten)]
    pub kube_sync: crate::fleet::kube_sync::KubeSyncConfig,

    #[command(flatten)]
    pub alerts: crate::alerts::AlertsConfig,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeTenants {
    Auto,
    On,
    Off,
}

#[derive(Args, Clone, Debug, Default)]
pub struct OidcConfig {
    /// OpenID Connect issuer URL (enables single sign-on).
    #[arg(long = "oidc-issuer", env = "WEIR_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// OIDC client id.
    #[arg(long = "oidc-client-id", env = "WEIR_OIDC_CLIENT_ID")]
    pub client_id: Option<String>,
    /// OIDC client secret.
    #[arg(
        long = "oidc-client-secret",
        env = "WEIR_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,
    /// Name of the ID token claim that lists the user's groups.
    #[arg(
        long = "oidc-groups-claim",
        env = "WEIR_OIDC_GROUPS_CLAIM",
        default_value = "groups"
    )]
    pub groups_claim: String,
    /// Scopes requested besides `openid` (space separated).
    #[arg(
        long = "oidc-scopes",
        env = "WEIR_OIDC_SCOPES",
        default_value = "email profile groups"
    )]
    pub scopes: String,
    /// Label of the sign-in button in the console.
    #[arg(
        long = "oidc-display-name",
        env = "WEIR_OIDC_DISPLAY_NAME",
        default_value = "Single sign-on"
    )]
    pub display_name: String,
    /// Let a first SSO sign-in take over an existing account with the same
    /// email, when the provider says the email is verified (never a system
    /// administrator's account). Off: such a sign-in is refused.
    #[arg(
        long = "oidc-link-verified-email",
        env = "WEIR_OIDC_LINK_VERIFIED_EMAIL",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub link_verified_email: bool,
}

impl OidcConfig {
    pub fn enabled(&self) -> bool {
        self.issuer.is_some() && self.client_id.is_some()
    }
}

impl Config {
    /// A configuration for tests and embedding: every default, the given database.
    pub fn for_database(database_url: &str) -> Self {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            c: Config,
        }
        let mut c = <Wrap as clap::Parser>::parse_from(["weir-api"]).c;
        c.database_url = database_url.to_string();
        c
    }

    /// Where the api may connect on a user's say-so (see [`crate::outbound`]).
    pub fn outbound(&self) -> crate::outbound::Policy {
        crate::outbound::Policy::new(&self.outbound_allow_cidrs)
    }

    /// Cookies get `Secure` when the api is reached over TLS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}
