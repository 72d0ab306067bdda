// A real OpenID provider for weir-api's SSO test (npm `oidc-provider`).
// Environment: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
// USERS (JSON: {"login": ["group", ...]} or
//   {"login": {"groups": [...], "email": "...", "email_verified": false}};
//   the email defaults to the login, email_verified to true),
// CLAIMS_IN_ID_TOKEN=1 puts the scope claims (email, name, groups) in the ID
// token too; without it the package's default holds: when an access token
// is issued, they come only from UserInfo.
// Any password is accepted by the provider's development login form; the
// login name is the account id and the subject.
// Prints "READY <issuer>" once listening.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 4000);
const issuer = `http://127.0.0.1:${port}`;
const users = JSON.parse(process.env.USERS || '{}');
const claimsInIdToken = process.env.CLAIMS_IN_ID_TOKEN === '1';

function user(id) {
  const u = users[id];
  if (Array.isArray(u)) return { groups: u, email: id, email_verified: true };
  return {
    groups: (u && u.groups) || [],
    email: (u && u.email) || id,
    email_verified: !(u && u.email_verified === false),
  };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID || 'weir',
      client_secret: process.env.CLIENT_SECRET || 'weir-secret',
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // PKCE on every request.
  pkce: { required: () => true },
  ...(claimsInIdToken ? { conformIdTokenClaims: false } : {}),
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    const u = user(id);
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: u.email,
          email_verified: u.email_verified,
          name: id.split('@')[0],
          groups: u.groups,
        };
      },
    };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
