import { useEffect, useState } from 'react';
import { useLocation, useNavigate } from 'react-router';
import { auth } from '../api/endpoints';
import { Logo } from '../Logo';
import { useSession } from '../session';
import { Button, ErrorNotice, Field, useAction } from '../ui/kit';

export function SignIn() {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [prov, setProv] = useState<{ local: boolean; oidc?: { name: string; login_url: string } | null } | null>(null);
  const { refresh } = useSession();
  const nav = useNavigate();
  const loc = useLocation();
  const back = (loc.state as { from?: string } | null)?.from ?? '/';
  const act = useAction();

  useEffect(() => {
    auth
      .providers()
      .then(setProv)
      .catch(() => setProv(null));
  }, []);

  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    void act.run(async () => {
      await auth.login(email.trim(), password);
      await refresh();
      nav(back, { replace: true });
    });
  };

  return (
    <div className="signin">
      <div className="card">
        <div className="brand">
          <Logo size={30} /> Weir
        </div>
        <p className="muted" style={{ marginTop: 0 }}>
          Sign in to manage your plants’ gateways, brokers and alerts.
        </p>
        <form className="form" onSubmit={submit} aria-label="Sign in">
          <Field label="Email" error={act.fields.email}>
            {(p) => (
              <input {...p} type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
            )}
          </Field>
          <Field label="Password" error={act.fields.password}>
            {(p) => (
              <input
                {...p}
                type="password"
                autoComplete="current-password"
                required
                value={password}
                onChange={(e) => setPassword(e.target.value)}
              />
            )}
          </Field>
          <ErrorNotice error={act.error} />
          <Button type="submit" variant="primary" busy={act.busy}>
            {act.busy ? 'Signing in…' : 'Sign in'}
          </Button>
        </form>
        <div className="stack" style={{ marginTop: 16 }}>
          <div className="divider">or</div>
          {prov && !prov.oidc ? (
            <p className="muted small" style={{ margin: 0, textAlign: 'center' }}>
              Single sign-on is not set up on this server.
            </p>
          ) : (
            <a className="btn" style={{ justifyContent: 'center' }} href={auth.ssoLoginUrl(back, prov?.oidc?.login_url)} data-testid="sso">
              Sign in with {prov?.oidc?.name ?? 'single sign-on'}
            </a>
          )}
        </div>
      </div>
    </div>
  );
}
