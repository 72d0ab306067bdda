// The project's device credentials: what OPC UA devices log in with, named
// by a device's "Credential". The secret is write-only: the api never sends
// it back (the list has names, kinds and user names), so "Replace" asks
// for the whole credential again. Agents fetch a credential only while
// their gateway's config names it.
import { useState } from 'react';
import { credentials } from '../api/endpoints';
import type { CredentialSummary, DeviceCredential } from '../api/types';
import { useScope } from '../scope';
import { Button, ConfirmDelete, Dialog, Empty, ErrorNotice, Field, fmtTime, Notice, PageHead, useAction } from '../ui/kit';
import { ListState, usePaged } from '../ui/paged';

export const KIND_LABEL: Record<string, string> = {
  userPassword: 'User name and password',
  certificate: 'Client certificate',
};

/** A device credential's name: as a device names it (`opcUa.credential`). */
export const CREDENTIAL_NAME_RE = /^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$/;

type Kind = DeviceCredential['kind'];

function CredentialDialog({ replacing, onClose, onSaved }: { replacing?: CredentialSummary; onClose: () => void; onSaved: () => void }) {
  const { s } = useScope();
  const act = useAction();
  const [name, setName] = useState(replacing?.name ?? '');
  const [kind, setKind] = useState<Kind>((replacing?.kind as Kind | undefined) ?? 'userPassword');
  const [username, setUsername] = useState(replacing?.username ?? '');
  const [password, setPassword] = useState('');
  const [certificatePem, setCert] = useState('');
  const [privateKeyPem, setKey] = useState('');
  const f = act.fields;
  const nameBad = name !== '' && !CREDENTIAL_NAME_RE.test(name);
  const body = (): DeviceCredential => (kind === 'userPassword' ? { kind, username, password } : { kind, certificatePem, privateKeyPem });
  const complete = name && !nameBad && (kind === 'userPassword' ? username && password : certificatePem && privateKeyPem);
  const save = () => act.run(() => credentials.put(s, name, body()), { ok: `${replacing ? 'Replaced' : 'Saved'} credential ${name}.`, then: () => { onSaved(); onClose(); } });
  return (
    <Dialog
      title={replacing ? `Replace credential ${replacing.name}` : 'New device credential'}
      onClose={onClose}
      footer={<><Button onClick={onClose}>Cancel</Button><Button variant="primary" busy={act.busy} disabled={!complete} onClick={save}>{replacing ? 'Replace' : 'Save'}</Button></>}
    >
      <form className="form" onSubmit={(e) => e.preventDefault()}>
        {replacing && <Notice kind="info">The stored secret is never shown; enter the whole credential again.</Notice>}
        <Field label="Name" hint="what a device's Credential field names, e.g. scada-login" error={f.name ?? (nameBad ? 'lowercase letters, digits, - and _, starting and ending with a letter or digit' : undefined)}>
          {(x) => <input {...x} value={name} disabled={!!replacing} autoComplete="off" onChange={(e) => setName(e.target.value)} />}
        </Field>
        <Field label="Kind" error={f.kind}>
          {(x) => <select {...x} value={kind} onChange={(e) => setKind(e.target.value as Kind)}><option value="userPassword">{KIND_LABEL.userPassword}</option><option value="certificate">{KIND_LABEL.certificate}</option></select>}
        </Field>
        {kind === 'userPassword' ? (
          <>
            <Field label="User name" error={f.username}>{(x) => <input {...x} value={username} autoComplete="off" onChange={(e) => setUsername(e.target.value)} />}</Field>
            <Field label="Password" hint="write-only: stored encrypted, sent only to agents whose config names this credential" error={f.password}>{(x) => <input {...x} type="password" value={password} autoComplete="new-password" onChange={(e) => setPassword(e.target.value)} />}</Field>
          </>
        ) : (
          <>
            <Field label="Certificate (PEM)" error={f.certificatePem}>{(x) => <textarea {...x} rows={5} className="mono" placeholder="-----BEGIN CERTIFICATE-----" value={certificatePem} onChange={(e) => setCert(e.target.value)} />}</Field>
            <Field label="Private key (PEM)" hint="write-only, like a password" error={f.privateKeyPem}>{(x) => <textarea {...x} rows={5} className="mono" placeholder="-----BEGIN PRIVATE KEY-----" value={privateKeyPem} autoComplete="off" onChange={(e) => setKey(e.target.value)} />}</Field>
          </>
        )}
        <ErrorNotice error={Object.keys(f).length ? null : act.error} />
      </form>
    </Dialog>
  );
}

export function Credentials() {
  const { s, can } = useScope();
  const p = usePaged(() => credentials.list(s), [s.org, s.project]);
  const [editing, setEditing] = useState<CredentialSummary | 'new' | null>(null);
  const [deleting, setDeleting] = useState<CredentialSummary | null>(null);
  const writer = can('project.write');
  return (
    <>
      <PageHead
        title="Device credentials"
        sub="Logins of OPC UA devices (user name and password, or a client certificate). A device names one in its Credential field; its gateway's agent fetches it over its own authenticated channel. Secrets are never shown again."
        actions={writer && <Button variant="primary" onClick={() => setEditing('new')}>New credential</Button>}
      />
      {!writer && <Notice kind="info">You can see which credentials exist; your role does not allow changing them.</Notice>}
      <ListState p={p} empty={<div className="card"><Empty title="No device credentials">Add one for an OPC UA server that needs a login.</Empty></div>}>
        <div className="table-wrap">
          <table className="table" aria-label="Device credentials">
            <thead><tr><th>Name</th><th>Kind</th><th>User name</th><th>Changed</th><th aria-label="Actions" /></tr></thead>
            <tbody>
              {p.items.map((c) => (
                <tr key={c.name}>
                  <td className="mono">{c.name}</td>
                  <td>{KIND_LABEL[c.kind] ?? c.kind}</td>
                  <td>{c.username ?? '—'}</td>
                  <td>{fmtTime(c.updated_at)}</td>
                  <td style={{ textAlign: 'right' }}>
                    {writer && <><Button variant="ghost" onClick={() => setEditing(c)} aria-label={`Replace ${c.name}`}>Replace</Button><Button variant="ghost" onClick={() => setDeleting(c)} aria-label={`Delete ${c.name}`}>Delete</Button></>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </ListState>
      {editing && <CredentialDialog replacing={editing === 'new' ? undefined : editing} onClose={() => setEditing(null)} onSaved={p.reload} />}
      {deleting && (
        <ConfirmDelete
          what="credential"
          name={deleting.name}
          consequence="Devices whose config names it can no longer log in: their agents are refused at their next fetch and drop their copy."
          onConfirm={() => credentials.remove(s, deleting.name).then(p.reload)}
          onClose={() => setDeleting(null)}
        />
      )}
    </>
  );
}
