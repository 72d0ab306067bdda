import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { useSession } from '../session';
import { account } from '../api/endpoints';
import { ApiError } from '../api/http';
import { ROLE_LABEL } from '../lib/permissions';
import { Button, Dialog, ErrorNotice, Field, fmtTime, Notice, PageHead, useAction } from '../ui/kit';

/** The fields the password form shows; an api objection to any other goes in the notice below it. */
const PASSWORD_FIELDS = ['current_password', 'new_password'];

function ChangePassword() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [confirm, setConfirm] = useState('');
  const [tried, setTried] = useState(false);
  const [done, setDone] = useState(false);
  const act = useAction();
  const mismatch = confirm !== next ? 'Does not match the new password.' : undefined;
  const shownByField = act.error instanceof ApiError && act.error.fields.some((f) => PASSWORD_FIELDS.includes(f.field));
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    setTried(true);
    setDone(false);
    if (mismatch || !current || !next) return;
    void act.run(() => account.changePassword(current, next), {
      ok: 'Password changed.',
      then: () => {
        setDone(true);
        setTried(false);
        setCurrent('');
        setNext('');
        setConfirm('');
      },
    });
  };
  return (
    <form className="form" onSubmit={submit} aria-label="Change password" noValidate>
      <Field label="Current password" error={act.fields.current_password ?? (tried && !current ? 'Enter your current password.' : undefined)}>
        {(p) => <input {...p} type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />}
      </Field>
      <Field label="New password" hint="At least 12 characters." error={act.fields.new_password ?? (tried && !next ? 'Enter a new password.' : undefined)}>
        {(p) => <input {...p} type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} />}
      </Field>
      <Field label="Confirm new password" error={tried || (confirm && confirm.length >= next.length) ? mismatch : undefined}>
        {(p) => <input {...p} type="password" autoComplete="new-password" value={confirm} onChange={(e) => setConfirm(e.target.value)} />}
      </Field>
      {!shownByField && <ErrorNotice error={act.error} />}
      {done && <Notice kind="ok">Your password is changed. Your other sessions were signed out; this one stays signed in.</Notice>}
      <div className="row">
        <Button type="submit" variant="primary" busy={act.busy}>
          Change password
        </Button>
      </div>
    </form>
  );
}

function SignOutEverywhere() {
  const { setMe } = useSession();
  const nav = useNavigate();
  const [asking, setAsking] = useState(false);
  const act = useAction();
  return (
    <>
      <p className="muted" style={{ marginTop: 0 }}>
        Lost a laptop or signed in on a shared computer? End every session of your account at once.
      </p>
      <Button variant="danger" onClick={() => setAsking(true)}>
        Sign out everywhere
      </Button>
      {asking && (
        <Dialog
          title="Sign out everywhere?"
          onClose={() => setAsking(false)}
          footer={
            <>
              <Button onClick={() => setAsking(false)}>Cancel</Button>
              <Button
                variant="danger"
                busy={act.busy}
                onClick={() =>
                  act.run(() => account.signOutEverywhere(), {
                    then: () => {
                      setMe(null);
                      nav('/signin');
                    },
                  })
                }
              >
                Sign out all sessions
              </Button>
            </>
          }
        >
          <p>Every session of your account ends, on every browser and device, this one included. You then sign in again here.</p>
          <ErrorNotice error={act.error} />
        </Dialog>
      )}
    </>
  );
}

export function Account() {
  const { me } = useSession();
  if (!me) return null;
  return (
    <>
      <PageHead title="Account" sub="Your sign-in and the roles you hold." />
      <div className="grid-2">
        <section className="card">
          <h2>Profile</h2>
          <dl className="stack" style={{ margin: 0 }}>
            <div>
              <dt className="muted small">Name</dt>
              <dd style={{ margin: 0 }}>{me.name || '—'}</dd>
            </div>
            <div>
              <dt className="muted small">Email</dt>
              <dd style={{ margin: 0 }}>{me.email}</dd>
            </div>
            <div>
              <dt className="muted small">Last sign-in</dt>
              <dd style={{ margin: 0 }}>{fmtTime(me.last_login_at)}</dd>
            </div>
            {me.system_admin && (
              <div>
                <span className="badge info plain">System administrator</span>
              </div>
            )}
          </dl>
        </section>
        <section className="card">
          <h2>Roles</h2>
          {me.memberships.length === 0 ? (
            <p className="muted">{me.system_admin ? 'As system administrator you may do everything.' : 'You hold no roles yet. Ask an organization administrator to invite you.'}</p>
          ) : (
            <ul style={{ margin: 0, paddingLeft: 18 }}>
              {me.memberships.map((m, i) => (
                <li key={i}>
                  {ROLE_LABEL[m.role]} in{' '}
                  <Link to={m.project ? `/o/${m.org}/p/${m.project}` : `/o/${m.org}`}>
                    {m.project ? `${m.org_name ?? m.org} / ${m.project_name ?? m.project}` : m.org_name ?? m.org}
                  </Link>
                </li>
              ))}
            </ul>
          )}
        </section>
        <section className="card">
          <h2>Change password</h2>
          {me.has_password ? (
            <ChangePassword />
          ) : (
            <p className="muted" data-testid="sso-only">
              You sign in with single sign-on, so your account has no Weir password. Change your password with your identity provider.
            </p>
          )}
        </section>
        <section className="card">
          <h2>Sessions</h2>
          <SignOutEverywhere />
        </section>
      </div>
    </>
  );
}
