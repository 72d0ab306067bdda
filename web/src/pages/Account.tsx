import { useState } from 'react';
import { auth } from '../api/endpoints';
import { useSession } from '../session';
import { ROLE_LABEL } from '../lib/permissions';
import { Button, ErrorNotice, Field, fmtTime, PageHead, useAction } from '../ui/kit';
import { Link } from 'react-router';
import { offers } from '../api/capabilities';

export function Account() {
  const { me } = useSession();
  const [cur, setCur] = useState('');
  const [next, setNext] = useState('');
  const act = useAction();
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
      </div>
      {me.has_password !== false && offers('POST', '/api/v1/me/password') && (
        <section className="card" style={{ marginTop: 16 }}>
          <h2>Change password</h2>
          <form
            className="form"
            onSubmit={(e) => {
              e.preventDefault();
              void act.run(() => auth.changePassword(cur, next), {
                ok: 'Password changed.',
                then: () => {
                  setCur('');
                  setNext('');
                },
              });
            }}
          >
            <Field label="Current password" error={act.fields.current_password}>
              {(p) => <input {...p} type="password" autoComplete="current-password" value={cur} onChange={(e) => setCur(e.target.value)} />}
            </Field>
            <Field label="New password" hint="At least 12 characters." error={act.fields.new_password}>
              {(p) => <input {...p} type="password" autoComplete="new-password" minLength={12} value={next} onChange={(e) => setNext(e.target.value)} />}
            </Field>
            <ErrorNotice error={act.error} />
            <div>
              <Button type="submit" variant="primary" busy={act.busy} disabled={!cur || next.length < 12}>
                Change password
              </Button>
            </div>
          </form>
        </section>
      )}
    </>
  );
}
