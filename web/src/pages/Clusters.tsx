import { useEffect, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { clusters } from '../api/endpoints';
import type { Cluster } from '../api/types';
import { useScope } from '../scope';
import { conditionWords, phaseTone } from '../lib/words';
import { SLUG_RE } from '../lib/slug';
import { Badge, Button, ConfirmDelete, Empty, ErrorNotice, Field, fmtTime, Notice, PageHead, Spinner, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';
import { ApiError } from '../api/http';
import { BrokerFigures, Listeners, TransferCluster } from './ClusterFigures';

export const EMQX_VERSIONS = ['5.8.6', '5.8.5', '5.8.4'];


type AuthMode = 'apiJwt' | 'password';

/** The api's default: managed clusters always check Weir's JWTs; an adopted broker keeps its logins. */
const DEFAULT_AUTH: Record<'kubernetes' | 'external', AuthMode> = { kubernetes: 'apiJwt', external: 'password' };

/** How gateways log in, in the wizard's words (the api's `auth_mode`). */
export const AUTH_MODES: { mode: AuthMode; title: string; text: (jwks: string) => string }[] = [
  {
    mode: 'apiJwt',
    title: 'Tokens from Weir (JWT)',
    text: (jwks) => `Each gateway's agent logs in with a short-lived token that Weir signs and renews; the token carries that gateway's own topic permissions. The broker checks tokens against Weir's public keys (${jwks}). No broker passwords to manage.`,
  },
  {
    mode: 'password',
    title: 'Broker logins (username and password)',
    text: () => "Weir uses the broker's dynamic-security admin login (Mosquitto) to create a login and topic permissions of its own for every gateway; agents only ever get their own. Without an admin login the broker is open: agents connect without credentials.",
  },
];

/** How a cluster's gateways get their own broker login. */
const IDENTITY_WORDS: Record<string, string> = {
  dynamicSecurity: 'Each gateway has its own broker login and ACL (Mosquitto dynamic security).',
  apiJwt: 'Each gateway logs in with an api-issued JWT carrying its own ACL.',
};

function nodesText(c: Cluster) {
  if (c.backend === 'external') return c.health ? (c.health.reachable ? `reachable${c.health.rtt_ms != null ? `, ${c.health.rtt_ms} ms` : ''}` : 'unreachable') : '—';
  return `${c.ready_nodes ?? 0} of ${c.replicas ?? '?'} ready`;
}

export function ClusterList() {
  const { s, base, can } = useScope();
  const p = usePaged(() => clusters.list(s), [s.org, s.project]);
  return (
    <>
      <PageHead
        title="MQTT clusters"
        sub="The brokers your gateways publish readings to."
        actions={can('project.update') && <Link className="btn primary" to={`${base}/clusters/new`} style={{ background: 'var(--c-primary)', color: '#fff', borderColor: 'var(--c-primary)' }}>New cluster</Link>}
      />
      <ListState p={p} empty={<div className="card"><Empty title="No clusters yet">{can('project.update') ? 'Create one, or adopt a broker you already run.' : ''}</Empty></div>}>
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr><th>Name</th><th>Kind</th><th>Version</th><th>Nodes</th><th>Status</th></tr>
            </thead>
            <tbody>
              {p.items.map((c) => (
                <tr key={c.name}>
                  <td><Link to={`${base}/clusters/${c.name}`}>{c.name}</Link></td>
                  <td>{c.backend === 'external' ? 'Existing broker' : 'Managed (Kubernetes)'}</td>
                  <td>{c.version ?? '—'}</td>
                  <td>{nodesText(c)}</td>
                  <td><Badge kind={phaseTone(c.phase)}>{c.phase ?? 'unknown'}</Badge></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
    </>
  );
}

export function ClusterWizard() {
  const { s, base } = useScope();
  const nav = useNavigate();
  const [step, setStep] = useState(1);
  const [backend, setBackend] = useState<'kubernetes' | 'external'>('kubernetes');
  const [name, setName] = useState('');
  const [version, setVersion] = useState(EMQX_VERSIONS[0]);
  const [replicas, setReplicas] = useState(3);
  const [storage, setStorage] = useState('10Gi');
  const [url, setUrl] = useState('mqtt://');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [authMode, setAuthMode] = useState<AuthMode>(DEFAULT_AUTH.kubernetes);
  const chooseBackend = (b: 'kubernetes' | 'external') => { setBackend(b); setAuthMode(DEFAULT_AUTH[b]); };
  const act = useAction();
  // With tokens the broker needs no admin login: it checks Weir's keys.
  const adminLogin = backend === 'external' && authMode === 'password';
  const jwks = `${window.location.origin}/api/v1/jwks.json`;
  const loginText =
    authMode === 'apiJwt'
      ? 'Gateways log in with tokens from Weir (JWT).'
      : username
        ? 'Gateways log in with a broker login Weir creates for each of them.'
        : 'Gateways connect without credentials: the broker is open.';
  const body =
    backend === 'kubernetes'
      ? { name, backend, auth_mode: authMode, spec: { version, replicas, storage: { size: storage } } }
      : { name, backend, url, auth_mode: authMode, ...(adminLogin && username ? { username } : {}), ...(adminLogin && password ? { password } : {}) };
  const nameErr = name && !SLUG_RE.test(name) ? 'Use lowercase letters, digits and “-”.' : act.fields.name;
  const valid = SLUG_RE.test(name) && (backend === 'kubernetes' ? replicas >= 1 && replicas <= 15 : /^(mqtts?|wss?|tcp|ssl):\/\/.+/.test(url));
  return (
    <>
      <PageHead title="New MQTT cluster" sub={`Step ${step} of 3`} />
      <div className="card">
        <ol className="row" style={{ listStyle: 'none', padding: 0, margin: '0 0 16px', gap: 16 }} aria-label="Steps">
          {['Kind', 'Settings', 'Review'].map((l, i) => (
            <li key={l} aria-current={step === i + 1 ? 'step' : undefined}>
              <Badge kind={step === i + 1 ? 'info' : step > i + 1 ? 'ok' : undefined} plain>{i + 1}. {l}</Badge>
            </li>
          ))}
        </ol>
        {step === 1 && (
          <fieldset className="stack" style={{ border: 0, padding: 0, margin: 0 }}>
            <legend className="sr-only">Kind of cluster</legend>
            <label className="row card" style={{ cursor: 'pointer' }}>
              <input type="radio" name="backend" checked={backend === 'kubernetes'} onChange={() => chooseBackend('kubernetes')} />
              <span><strong>Managed EMQX cluster</strong><br /><span className="muted">Weir runs it on Kubernetes: scaling, upgrades one node at a time.</span></span>
            </label>
            <label className="row card" style={{ cursor: 'pointer' }}>
              <input type="radio" name="backend" checked={backend === 'external'} onChange={() => chooseBackend('external')} />
              <span><strong>Existing broker</strong><br /><span className="muted">Adopt a broker you already run (e.g. Mosquitto); Weir checks it can connect.</span></span>
            </label>
          </fieldset>
        )}
        {step === 2 && (
          <form className="form" onSubmit={(e) => e.preventDefault()}>
            <Field label="Name" hint="Lowercase letters, digits and “-”." error={nameErr}>
              {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} placeholder="plant-broker" />}
            </Field>
            {backend === 'kubernetes' ? (
              <>
                <Field label="EMQX version" hint="The 5.8 line clusters without a license." error={act.fields['spec.version'] ?? act.fields.version}>
                  {(p) => (
                    <select {...p} value={version} onChange={(e) => setVersion(e.target.value)}>
                      {EMQX_VERSIONS.map((v) => <option key={v}>{v}</option>)}
                    </select>
                  )}
                </Field>
                <Field label="Nodes" hint="3 keeps working when one node is down." error={act.fields['spec.replicas'] ?? act.fields.replicas}>
                  {(p) => <input {...p} type="number" min={1} max={15} value={replicas} onChange={(e) => setReplicas(Number(e.target.value))} />}
                </Field>
                <Field label="Storage per node" error={act.fields['spec.storage.size']}>
                  {(p) => <input {...p} value={storage} onChange={(e) => setStorage(e.target.value)} />}
                </Field>
              </>
            ) : (
              <>
                <Field label="Broker URL" hint="e.g. mqtt://broker.plant.local:1883" error={act.fields.url}>
                  {(p) => <input {...p} value={url} onChange={(e) => setUrl(e.target.value)} />}
                </Field>
              </>
            )}
            <AuthModeChoice backend={backend} value={authMode} onChange={setAuthMode} error={act.fields.auth_mode} jwks={jwks} />
            {adminLogin && (
              <>
                <Field label="Admin username (optional)" hint="The broker's dynamic-security admin login. Weir uses it to give every gateway its own login and ACL; agents never receive it. Leave empty only for an open broker without authentication." error={act.fields.username}>
                  {(p) => <input {...p} value={username} onChange={(e) => setUsername(e.target.value)} autoComplete="off" />}
                </Field>
                <Field label="Admin password (optional)" error={act.fields.password}>
                  {(p) => <input {...p} type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="new-password" />}
                </Field>
              </>
            )}
          </form>
        )}
        {step === 3 && (
          <div className="stack">
            <p>Weir will {backend === 'kubernetes' ? `create the EMQX ${version} cluster “${name}” with ${replicas} node${replicas === 1 ? '' : 's'} and ${storage} storage each` : `adopt the broker at ${url} as “${name}”`}. {loginText}</p>
            <ErrorNotice error={act.error} />
            {act.error instanceof ApiError && act.fields && Object.keys(act.fields).length > 0 && (
              <Notice kind="warn">Go back to fix the fields marked in red.</Notice>
            )}
          </div>
        )}
        <div className="row" style={{ marginTop: 16 }}>
          <Button onClick={() => (step === 1 ? nav(`${base}/clusters`) : setStep(step - 1))}>{step === 1 ? 'Cancel' : 'Back'}</Button>
          {step < 3 ? (
            <Button variant="primary" disabled={step === 2 && !valid} onClick={() => setStep(step + 1)}>Next</Button>
          ) : (
            <Button variant="primary" busy={act.busy} onClick={() => act.run(() => clusters.create(s, body), { ok: `Cluster ${name} is being created.`, then: () => nav(`${base}/clusters/${name}`) })}>
              Create cluster
            </Button>
          )}
        </div>
      </div>
    </>
  );
}

/** How gateways log in; a managed cluster offers only tokens. */
function AuthModeChoice({ backend, value, onChange, error, jwks }: { backend: 'kubernetes' | 'external'; value: AuthMode; onChange: (m: AuthMode) => void; error?: string; jwks: string }) {
  return (
    <fieldset className="stack" style={{ border: 0, padding: 0, margin: 0 }} aria-describedby={error ? 'auth-mode-err' : undefined}>
      <legend><strong>How gateways log in to the broker</strong></legend>
      {AUTH_MODES.map((m) => {
        const off = backend === 'kubernetes' && m.mode === 'password';
        return (
          <label key={m.mode} className="row card" style={{ cursor: off ? 'not-allowed' : 'pointer', opacity: off ? 0.6 : 1 }}>
            <input type="radio" name="auth_mode" value={m.mode} checked={value === m.mode} disabled={off} onChange={() => onChange(m.mode)} />
            <span>
              <strong>{m.title}</strong>{DEFAULT_AUTH[backend] === m.mode && <span className="muted"> (default)</span>}
              <br />
              <span className="muted">{off ? 'Not for managed clusters: Weir configures EMQX to check its tokens.' : m.text(jwks)}</span>
            </span>
          </label>
        );
      })}
      {error && <span className="error" id="auth-mode-err" role="alert">{error}</span>}
    </fieldset>
  );
}

export function ClusterDetail() {
  const { s, base, can } = useScope();
  const { cluster: name = '' } = useParams();
  const nav = useNavigate();
  const [c, setC] = useState<Cluster | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const [replicas, setReplicas] = useState(0);
  const [version, setVersion] = useState('');
  const [deleting, setDeleting] = useState(false);
  const scale = useAction();
  const upgrade = useAction();
  useEffect(() => {
    let live = true;
    clusters.get(s, name).then((x) => { if (live) { setC(x); setReplicas(x.replicas ?? 1); setVersion(x.version ?? EMQX_VERSIONS[0]); } }).catch((e) => live && setErr(e));
    const t = setInterval(() => setTick((n) => n + 1), 10000);
    return () => { live = false; clearInterval(t); };
  }, [s.org, s.project, name, tick]);
  if (err) return <><PageHead title={name} /><ErrorNotice error={err} /></>;
  if (!c) return <Spinner />;
  const editable = can('project.update');
  return (
    <>
      <PageHead
        title={c.name}
        sub={<>{c.backend === 'external' ? 'Existing broker' : `Managed EMQX ${c.version ?? ''}`} · <Badge kind={phaseTone(c.phase)}>{c.phase ?? 'unknown'}</Badge></>}
        actions={editable && <Button variant="danger" onClick={() => setDeleting(true)}>Delete cluster</Button>}
      />
      <div className="grid-2">
        <section className="card">
          <h2>Status</h2>
          {c.conditions?.length ? (
            <ul className="stack" style={{ listStyle: 'none', padding: 0, margin: 0 }} aria-label="Conditions">
              {c.conditions.map((x) => {
                const w = conditionWords(x);
                return <li key={x.type}><Badge kind={w.tone} plain>{x.type}</Badge> {w.text} <span className="muted small">since {fmtTime(x.lastTransitionTime)}</span></li>;
              })}
            </ul>
          ) : <p className="muted">No status reported yet.</p>}
          <p aria-label="Gateway logins">{IDENTITY_WORDS[c.agent_identities ?? ''] ?? null}</p>
          {c.agent_identities === 'none' && (
            <Notice kind="warn">This broker has no authentication: any client on its network can read and write every gateway's topics. Store its dynamic-security admin login to give every gateway its own.</Notice>
          )}
          {c.shared_with?.length ? <p>Shared with {c.shared_with.join(', ')}.</p> : null}
          {c.health && (
            <p>{c.health.reachable ? `Weir reached the broker in ${c.health.rtt_ms ?? '?'} ms` : `Weir cannot reach the broker${c.health.error ? `: ${c.health.error}` : ''}`} (checked {fmtTime(c.health.checked_at)}).</p>
          )}
        </section>
        <section className="card">
          <h2>Endpoints</h2>
          {c.endpoints?.length ? <ul style={{ margin: 0, paddingLeft: 18 }}>{c.endpoints.map((e) => <li key={e} className="mono">{e}</li>)}</ul> : <p className="muted">{c.url ?? 'None yet.'}</p>}
        </section>
      </div>
      <div className="grid-2" style={{ marginTop: 16 }}>
        <BrokerFigures c={c} onChange={setC} />
        <Listeners c={c} />
      </div>
      {c.backend !== 'external' && (
        <section className="card" style={{ marginTop: 16 }}>
          <h2>Nodes</h2>
          {c.nodes?.length ? (
            <table className="table"><thead><tr><th>Node</th><th>Status</th><th>Version</th></tr></thead>
              <tbody>{c.nodes.map((n) => <tr key={n.name}><td className="mono">{n.name}</td><td><Badge kind={phaseTone(n.status)}>{n.status}</Badge></td><td>{n.version ?? '—'}</td></tr>)}</tbody></table>
          ) : <p className="muted">{c.ready_nodes ?? 0} of {c.replicas ?? '?'} nodes ready.</p>}
          {editable && (
            <div className="grid-2" style={{ marginTop: 16 }}>
              <form className="form" onSubmit={(e) => { e.preventDefault(); void scale.run(() => clusters.update(s, name, { spec: { ...(c.spec ?? {}), replicas } }), { ok: `Scaling ${name} to ${replicas} nodes.`, then: () => setTick((t) => t + 1) }); }}>
                <Field label="Scale to nodes" hint="Scaling down moves clients off a node before removing it." error={scale.fields.replicas}>
                  {(p) => <input {...p} type="number" min={1} max={15} value={replicas} onChange={(e) => setReplicas(Number(e.target.value))} />}
                </Field>
                <ErrorNotice error={scale.error} />
                <div><Button type="submit" busy={scale.busy} disabled={replicas === c.replicas}>Scale</Button></div>
              </form>
              <form className="form" onSubmit={(e) => { e.preventDefault(); void upgrade.run(() => clusters.update(s, name, { spec: { ...(c.spec ?? {}), version } }), { ok: `Upgrading ${name} to ${version}, one node at a time.`, then: () => setTick((t) => t + 1) }); }}>
                <Field label="Upgrade to version" hint="Nodes are upgraded one at a time." error={upgrade.fields.version}>
                  {(p) => <select {...p} value={version} onChange={(e) => setVersion(e.target.value)}>{[...new Set([c.version ?? '', ...EMQX_VERSIONS])].filter(Boolean).map((v) => <option key={v}>{v}</option>)}</select>}
                </Field>
                <ErrorNotice error={upgrade.error} />
                <div><Button type="submit" busy={upgrade.busy} disabled={version === c.version}>Upgrade</Button></div>
              </form>
            </div>
          )}
        </section>
      )}
      {editable && <div style={{ marginTop: 16 }}><TransferCluster c={c} /></div>}
      {deleting && (
        <ConfirmDelete
          what="cluster"
          name={c.name}
          consequence="Gateways publishing to this cluster lose their connection. Readings they buffer on disk are kept until a cluster is available again."
          onConfirm={async (typed) => { await clusters.remove(s, name, typed); nav(`${base}/clusters`); }}
          onClose={() => setDeleting(false)}
        />
      )}
    </>
  );
}
