import { useCallback, useEffect, useMemo, useState } from 'react';
import { Link, NavLink, useNavigate, useParams } from 'react-router';
import { credentials as credentialsApi, gateways } from '../api/endpoints';
import type { Gateway, GatewayConfig, NewEnrollmentToken, VersionDiff } from '../api/types';
import { useScope } from '../scope';
import { gatewayStatus } from '../lib/words';
import { SLUG_RE } from '../lib/slug';
import { Badge, Button, ConfirmDelete, Copyable, Dialog, Empty, ErrorNotice, Field, fmtAgo, fmtTime, Notice, PageHead, Spinner, useAction } from '../ui/kit';
import { ListState, Pager, usePaged } from '../ui/paged';
import { ConfigEditor, newDevice } from './ConfigEditor';
import { TrendsChart } from './Trends';
import { ApiError } from '../api/http';
import { AgentRevoked, RevokeAgentButton } from './RevokeAgent';
import { AgentReport, DataGaps } from './AgentReport';
import { LatestValues } from './LatestValues';
import { ClusterPicker, useOwnClusters } from './ClusterPicker';

export function versionText(g: Pick<Gateway, 'desired_version' | 'applied_version'>) {
  const d = g.desired_version;
  const a = g.applied_version;
  if (d == null) return { text: '—', tone: undefined };
  if (a == null) return { text: `v${d} (not applied yet)`, tone: 'warn' as const };
  if (a === d) return { text: `v${d}`, tone: 'ok' as const };
  return { text: `runs v${a}, wants v${d}`, tone: 'warn' as const };
}

function CreateGateway({ onClose }: { onClose: () => void }) {
  const { s, base } = useScope();
  const nav = useNavigate();
  const [name, setName] = useState('');
  const [site, setSite] = useState('');
  const [location, setLocation] = useState('');
  const [cluster, setCluster] = useState<string | null>(null);
  const own = useOwnClusters(s);
  const act = useAction();
  const clusterErr = act.fields['spec.clusterRef'];
  const nameErr = name && !SLUG_RE.test(name) ? 'Use lowercase letters, digits and “-”.' : act.fields.name;
  return (
    <Dialog
      title="New edge gateway"
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button
            variant="primary"
            busy={act.busy}
            disabled={!SLUG_RE.test(name)}
            onClick={() =>
              act.run(() => gateways.create(s, { name, spec: { site: { ...(site ? { name: site } : {}), ...(location ? { location } : {}) }, mode: 'external', ...(cluster ? { clusterRef: cluster } : {}), devices: [] }, comment: 'created in the console' }), {
                ok: `Created gateway ${name}.`,
                then: (g) => nav(`${base}/gateways/${g?.name ?? name}`),
              })
            }
          >
            Create gateway
          </Button>
        </>
      }
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        <Field label="Name" hint="One gateway per site, e.g. “north-pump-station”." error={nameErr}>
          {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Site name" error={act.fields['site.name']}>{(p) => <input {...p} value={site} onChange={(e) => setSite(e.target.value)} placeholder="North pump station" />}</Field>
        <Field label="Location" error={act.fields['site.location']}>{(p) => <input {...p} value={location} onChange={(e) => setLocation(e.target.value)} placeholder="Riverside, Mill Road 4" />}</Field>
        {own.list ? <ClusterPicker value={cluster} onChange={setCluster} own={own.list} error={clusterErr} /> : <Spinner label="Loading clusters" />}
        <ErrorNotice error={own.error} />
        <ErrorNotice error={clusterErr && Object.keys(act.fields).length === 1 ? null : act.error} />
      </form>
    </Dialog>
  );
}

export function GatewayList() {
  const { s, base, can } = useScope();
  const [creating, setCreating] = useState(false);
  const p = usePaged(() => gateways.list(s), [s.org, s.project]);
  useEffect(() => {
    const t = setInterval(p.reload, 15000);
    return () => clearInterval(t);
  }, [p.reload]);
  return (
    <>
      <PageHead
        title="Edge gateways"
        sub="The agents at your sites: whether they are online and which config they run."
        actions={can('project.write') && <Button variant="primary" onClick={() => setCreating(true)}>New gateway</Button>}
      />
      <ListState p={p} empty={<div className="card"><Empty title="No gateways yet">{can('project.write') ? 'Create one, then install the agent at the site with its enrollment token.' : ''}</Empty></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="Gateways">
            <thead>
              <tr><th>Name</th><th>Site</th><th>Status</th><th>Last seen</th><th>Config version</th><th>Last error</th></tr>
            </thead>
            <tbody>
              {p.items.map((g) => {
                const st = gatewayStatus(g.status);
                const v = versionText(g);
                return (
                  <tr key={g.name}>
                    <td><Link to={`${base}/gateways/${g.name}`}>{g.name}</Link></td>
                    <td>{g.site?.name ?? '—'}</td>
                    <td><Badge kind={st.tone}>{st.label}</Badge></td>
                    <td className="muted" title={fmtTime(g.last_heartbeat)}>{fmtAgo(g.last_heartbeat)}</td>
                    <td>{v.tone ? <Badge kind={v.tone} plain>{v.text}</Badge> : v.text}</td>
                    <td className="small" style={{ color: g.last_error ? 'var(--c-danger)' : undefined }}>{g.last_error ?? ''}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {creating && <CreateGateway onClose={() => setCreating(false)} />}
    </>
  );
}

// ---------------- detail ----------------

export function GatewayDetail() {
  const { s, base, can } = useScope();
  const { gateway: name = '', tab = 'overview' } = useParams();
  const nav = useNavigate();
  const [g, setG] = useState<Gateway | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const [deleting, setDeleting] = useState(false);
  const [revoked, setRevoked] = useState(false);
  useEffect(() => setRevoked(false), [name]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    gateways.get(s, name).then((x) => live && (setG(x), setErr(null))).catch((e) => live && setErr(e));
    return () => { live = false; };
  }, [s.org, s.project, name, tick]);
  useEffect(() => {
    const t = setInterval(reload, 10000);
    return () => clearInterval(t);
  }, [reload]);
  if (err && !g) return <><PageHead title={name} /><ErrorNotice error={err} /></>;
  if (!g) return <Spinner />;
  const st = gatewayStatus(g.status);
  const gb = `${base}/gateways/${name}`;
  const tabs: [string, string][] = [['overview', 'Overview'], ['config', 'Devices & rules'], ['versions', 'Versions'], ['enrollment', 'Enrollment'], ['readings', 'Live readings']];
  return (
    <>
      <PageHead
        title={g.name}
        sub={<>{g.site?.name ?? 'No site name'} · <Badge kind={st.tone}>{st.label}</Badge></>}
        actions={can('project.write') && <><RevokeAgentButton s={s} gateway={g.name} onRevoked={() => { setRevoked(true); reload(); }} /><Button variant="danger" onClick={() => setDeleting(true)}>Delete gateway</Button></>}
      />
      {revoked && <AgentRevoked enrollment={`${gb}/enrollment`} />}
      <nav className="tabs" aria-label="Gateway sections">
        {tabs.map(([k, l]) => (
          <NavLink key={k} to={k === 'overview' ? gb : `${gb}/${k}`} end className={() => (tab === k ? 'active' : '')}>{l}</NavLink>
        ))}
      </nav>
      {tab === 'overview' && <Overview g={g} onSaved={reload} />}
      {tab === 'config' && <ConfigTab g={g} onSaved={reload} />}
      {tab === 'versions' && <VersionsTab g={g} onRolledBack={reload} />}
      {tab === 'enrollment' && <EnrollmentTab g={g} />}
      {tab === 'readings' && <div className="stack"><LatestValues g={g} /><TrendsChart g={g} /></div>}
      {deleting && (
        <ConfirmDelete what="gateway" name={g.name} consequence="The agent at the site stops receiving configs and its credentials stop working." onConfirm={async () => { await gateways.remove(s, name); nav(`${base}/gateways`); }} onClose={() => setDeleting(false)} />
      )}
    </>
  );
}

function ClusterSection({ g, onSaved }: { g: Gateway; onSaved: () => void }) {
  const { s, base, can } = useScope();
  const own = useOwnClusters(s);
  const current = g.cluster ?? null;
  const [cluster, setCluster] = useState<string | null>(current);
  useEffect(() => setCluster(current), [current]);
  const act = useAction();
  const err = act.fields['spec.clusterRef'];
  const editable = can('project.write');
  const isOwn = !!current && !!own.list?.some((c) => c.name === current);
  return (
    <section className="card stack" aria-label="Cluster">
      <h2 style={{ margin: 0 }}>Cluster</h2>
      <p style={{ margin: 0 }} data-testid="current-cluster">
        {!current
          ? 'No cluster chosen: Weir gives the agent no broker to publish readings to (only one set on the agent itself with --mqtt-url).'
          : isOwn
            ? <>Publishes to <Link to={`${base}/clusters/${current}`}>{current}</Link>.</>
            : <>Publishes to <strong>{current}</strong>{own.list ? ', a cluster another project shares with this one' : ''}.</>}
      </p>
      <ErrorNotice error={own.error} />
      {editable && own.list && (
        <form className="form" onSubmit={(e) => { e.preventDefault(); void act.run(() => gateways.setCluster(s, g.name, cluster, cluster ? `cluster set to ${cluster}` : 'cluster removed'), { ok: cluster ? `The gateway now uses cluster ${cluster}; the agent gets new broker credentials.` : 'The gateway has no cluster now.', then: onSaved }); }}>
          <ClusterPicker value={cluster} onChange={(v) => { setCluster(v); act.reset(); }} own={own.list} error={err} />
          <ErrorNotice error={err ? null : act.error} />
          <div><Button type="submit" busy={act.busy} disabled={cluster === current}>Change cluster</Button></div>
        </form>
      )}
    </section>
  );
}

function Overview({ g, onSaved }: { g: Gateway; onSaved: () => void }) {
  const v = versionText(g);
  const cfg = g.config;
  const tags = (cfg?.devices ?? []).reduce((n, d) => n + d.groups.reduce((m, x) => m + x.tags.length, 0), 0);
  return (
    <div className="stack">
      <div className="grid">
        <div className="card stat"><span className="label">Status</span><span className="value">{gatewayStatus(g.status).label}</span><span className="muted">last heartbeat {fmtAgo(g.last_heartbeat)}</span></div>
        <div className="card stat"><span className="label">Config</span><span className="value">{v.text}</span><span className="muted">desired v{g.desired_version ?? '—'}, applied v{g.applied_version ?? '—'}</span></div>
        <div className="card stat"><span className="label">Devices</span><span className="value">{cfg?.devices?.length ?? 0}</span><span className="muted">{tags} tags</span></div>
        <div className="card stat"><span className="label">Agent</span><span className="value" style={{ fontSize: 18 }}>{g.agent_version ?? '—'}</span><span className="muted">{g.mode === 'inCluster' ? 'runs in the cluster' : 'installed at the site'}</span></div>
        {g.last_error && !g.agent_status?.refused && <div style={{ gridColumn: '1 / -1' }}><Notice kind="error">The agent reports: {g.last_error}</Notice></div>}
      </div>
      <AgentReport g={g} />
      <DataGaps g={g} />
      <ClusterSection g={g} onSaved={onSaved} />
    </div>
  );
}

function ConfigTab({ g, onSaved }: { g: Gateway; onSaved: () => void }) {
  const { s, can } = useScope();
  const initial = useMemo<GatewayConfig>(() => structuredClone(g.config ?? { devices: [] }), [g.version]); // eslint-disable-line react-hooks/exhaustive-deps
  const [cfg, setCfg] = useState<GatewayConfig>(initial);
  const [comment, setComment] = useState('');
  const act = useAction();
  const editable = can('project.write');
  const dirty = JSON.stringify(cfg) !== JSON.stringify(initial);
  useEffect(() => setCfg(initial), [initial]);
  // Names for the OPC UA credential picker; without the list, the name is typed.
  const [credNames, setCredNames] = useState<string[] | undefined>(undefined);
  useEffect(() => {
    credentialsApi
      .list(s)
      .then((p) => setCredNames(p.items.map((c) => c.name)))
      .catch(() => setCredNames(undefined));
  }, [s.org, s.project]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <div className="stack">
      {!editable && <Notice kind="info">You can view this configuration; your role does not allow changing it.</Notice>}
      <ConfigEditor value={cfg} onChange={setCfg} errors={act.fields} disabled={!editable} credentials={credNames} />
      {editable && (
        <div className="card stack">
          <Field label="What changed" hint="Saved with the new version, e.g. “Add chlorine analyser on line 2”." error={act.fields.comment}>
            {(p) => <input {...p} value={comment} onChange={(e) => setComment(e.target.value)} />}
          </Field>
          <ErrorNotice error={act.error && !(act.error instanceof ApiError && act.error.fields.length) ? act.error : null} />
          {act.error instanceof ApiError && act.error.fields.length > 0 && <Notice kind="error">The server did not accept this configuration. The fields marked in red say why.</Notice>}
          <div className="row">
            <Button variant="primary" busy={act.busy} disabled={!dirty} onClick={() => act.run(() => gateways.saveConfig(s, g, cfg, comment), { ok: 'Saved as a new version; the agent picks it up within seconds.', then: () => { setComment(''); onSaved(); } })}>
              Save new version
            </Button>
            <Button disabled={!dirty || act.busy} onClick={() => { setCfg(initial); act.reset(); }}>Discard changes</Button>
            {!cfg.devices.length && <Button onClick={() => setCfg({ ...cfg, devices: [newDevice(1)] })}>Start with a simulated device</Button>}
          </div>
        </div>
      )}
    </div>
  );
}

const OP_WORDS: Record<string, string> = { add: 'added', remove: 'removed', replace: 'changed', move: 'moved', copy: 'copied' };

/** JSON pointer `/devices/0/groups/1/intervalMs` -> `devices[0].groups[1].intervalMs`. */
export function pointerToPath(p: string): string {
  return p
    .split('/')
    .slice(1)
    .map((x) => x.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), '');
}

function DiffView({ d }: { d: VersionDiff }) {
  if (!d.changes.length) return <p className="muted">The two versions are the same.</p>;
  return (
    <table className="table" aria-label="Differences">
      <thead><tr><th>Field</th><th>Change</th><th>New value</th></tr></thead>
      <tbody>{d.changes.map((c, i) => <tr key={i}><td className="mono">{pointerToPath(c.path)}</td><td>{OP_WORDS[c.op] ?? c.op}</td><td className="mono small">{c.op === 'remove' ? '' : JSON.stringify(c.value) ?? ''}</td></tr>)}</tbody>
    </table>
  );
}

function VersionsTab({ g, onRolledBack }: { g: Gateway; onRolledBack: () => void }) {
  const { s, can } = useScope();
  const p = usePaged(() => gateways.versions(s, g.name), [s.org, s.project, g.name, g.version]);
  const [pair, setPair] = useState<{ a: number; b: number } | null>(null);
  const [diff, setDiff] = useState<VersionDiff | null>(null);
  const diffAct = useAction();
  const rb = useAction();
  const [rolling, setRolling] = useState<number | null>(null);
  const showDiff = (a: number, b: number) => { setPair({ a, b }); setDiff(null); void diffAct.run(() => gateways.diff(s, g.name, a, b), { then: setDiff }); };
  return (
    <div className="stack">
      <ListState p={p} empty={<div className="card"><Empty title="No versions yet">Save the configuration to create version 1.</Empty></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="Versions">
            <thead><tr><th>Version</th><th>Saved</th><th>By</th><th>Comment</th><th aria-label="Actions" /></tr></thead>
            <tbody>
              {p.items.map((v) => (
                <tr key={v.version}>
                  <td>v{v.version} {v.version === g.version && <Badge kind="info" plain>current</Badge>}</td>
                  <td>{fmtTime(v.created_at)}</td>
                  <td>{v.author ?? '—'}</td>
                  <td>{v.comment || <span className="muted">no comment</span>}</td>
                  <td style={{ textAlign: 'right', whiteSpace: 'nowrap' }}>
                    {g.version != null && v.version !== g.version && (
                      <>
                        <Button variant="ghost" onClick={() => showDiff(v.version, g.version!)}>Compare with current</Button>
                        {can('project.write') && <Button variant="ghost" onClick={() => setRolling(v.version)}>Roll back to this</Button>}
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager p={p} />
      </ListState>
      {pair && (
        <section className="card">
          <h2>Changes from v{pair.a} to v{pair.b}</h2>
          {diffAct.busy && <Spinner />}
          <ErrorNotice error={diffAct.error} />
          {diff && <DiffView d={diff} />}
        </section>
      )}
      {rolling != null && (
        <Dialog title={`Roll back to version ${rolling}?`} onClose={() => setRolling(null)} footer={<><Button onClick={() => setRolling(null)}>Cancel</Button><Button variant="primary" busy={rb.busy} onClick={() => rb.run(() => gateways.rollback(s, g.name, rolling, `Roll back to v${rolling}`), { ok: `Rolled back: a new version equal to v${rolling} was saved.`, then: () => { setRolling(null); onRolledBack(); p.reload(); } })}>Roll back</Button></>}>
          <p>Weir saves a new version with the configuration of v{rolling}; the agent applies it within seconds. Nothing is deleted.</p>
          <ErrorNotice error={rb.error} />
        </Dialog>
      )}
    </div>
  );
}

export function installCommand(server: string, t: Pick<NewEnrollmentToken, 'token'> & { install_command?: string }): string {
  return t.install_command || `weir-agent run --server ${server} --token ${t.token}`;
}

function EnrollmentTab({ g }: { g: Gateway }) {
  const { s, can } = useScope();
  const p = usePaged(() => gateways.enrollmentTokens(s, g.name), [s.org, s.project, g.name]);
  const [hours, setHours] = useState(24);
  const [uses, setUses] = useState(1);
  const [made, setMade] = useState<NewEnrollmentToken | null>(null);
  const act = useAction();
  const revoke = useAction();
  const editable = can('project.write');
  return (
    <div className="stack">
      {editable && (
        <section className="card">
          <h2>Install the agent at the site</h2>
          <p className="muted" style={{ marginTop: 0 }}>Issue a token, then run the command on the gateway PC. The agent enrolls itself and fetches its signed configuration.</p>
          <form className="row" style={{ alignItems: 'flex-end' }} onSubmit={(e) => { e.preventDefault(); void act.run(() => gateways.createEnrollmentToken(s, g.name, { expires_in_secs: hours * 3600, max_uses: uses }), { ok: 'Enrollment token issued.', then: (t) => { setMade(t); p.reload(); } }); }}>
            <Field label="Valid for (hours)" error={act.fields.expires_in_secs}>{(x) => <input {...x} type="number" min={1} max={720} value={hours} onChange={(e) => setHours(Number(e.target.value))} />}</Field>
            <Field label="Uses" error={act.fields.max_uses}>{(x) => <input {...x} type="number" min={1} max={100} value={uses} onChange={(e) => setUses(Number(e.target.value))} />}</Field>
            <Button type="submit" variant="primary" busy={act.busy}>Issue enrollment token</Button>
          </form>
          <ErrorNotice error={act.error} />
          {made && (
            <div className="stack" style={{ marginTop: 12 }} data-testid="install">
              <Notice kind="warn">Copy the command now: the token is shown only once.</Notice>
              <Copyable text={installCommand(window.location.origin, made)} label="Copy command" />
            </div>
          )}
        </section>
      )}
      <section className="card">
        <h2>Tokens</h2>
        <ErrorNotice error={revoke.error} />
        <ListState p={p} empty={<Empty title="No tokens issued" />}>
          <table className="table" aria-label="Enrollment tokens">
            <thead><tr><th>Issued</th><th>Expires</th><th>Used</th><th>State</th><th aria-label="Actions" /></tr></thead>
            <tbody>
              {p.items.map((t) => {
                const expired = t.expires_at && Date.parse(t.expires_at) < Date.now();
                const used = t.max_uses != null && (t.uses ?? 0) >= t.max_uses;
                return (
                  <tr key={t.id}>
                    <td>{fmtTime(t.created_at)}</td>
                    <td>{fmtTime(t.expires_at)}</td>
                    <td>{t.uses ?? 0} of {t.max_uses ?? '∞'}</td>
                    <td>{t.revoked_at ? <Badge kind="bad">revoked</Badge> : expired ? <Badge>expired</Badge> : used ? <Badge>used up</Badge> : <Badge kind="ok">usable</Badge>}</td>
                    <td style={{ textAlign: 'right' }}>{editable && !t.revoked_at && !expired && !used && <Button variant="ghost" busy={revoke.busy} onClick={() => revoke.run(() => gateways.revokeEnrollmentToken(s, g.name, t.id), { ok: 'Token revoked.', then: p.reload })}>Revoke</Button>}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <Pager p={p} />
        </ListState>
      </section>
    </div>
  );
}
