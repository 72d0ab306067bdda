import { useSession } from '../session';
import { ROLE_LABEL } from '../lib/permissions';
import { fmtTime, PageHead } from '../ui/kit';
import { Link } from 'react-router';

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
      </div>
    </>
  );
}
