// A real OpenID provider for weir-api's SSO test (npm `oidc-provider`).
// Environment: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
// USERS (JSON: {"email": ["group", ...]}). Any password is accepted by the
// provider's development login form; the login name is the account id.
// Prints "READY <issuer>" once listening.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 4000);
const issuer = `http://127.0.0.1:${port}`;
const users = JSON.parse(process.env.USERS || '{}');

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
  // PKCE on every request; claims in the ID token even with an access token.
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: `sub-${id}`,
          email: id,
          email_verified: true,
          name: id.split('@')[0],
          groups: users[id] || [],
        };
      },
    };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
