// Batch changes: one change to many gateways, with a result per gateway.
// The batch route takes a template or a JSON merge patch of the gateway
// spec; the common changes (agent version, MQTT cluster) are offered as
// plain fields that build the patch, the rest as a patch typed in JSON.
import { useEffect, useMemo, useState } from 'react';
import { fleet } from '../api/endpoints';
import type { GatewayTemplate } from '../api/types';
import { useScope } from '../scope';
import { ErrorNotice, Field, Notice, PageHead } from '../ui/kit';
import { ApplyToGateways, type BatchChange } from './FleetBatch';
import { ClusterPicker, useOwnClusters } from './ClusterPicker';

type Kind = 'agentVersion' | 'cluster' | 'template' | 'patch';

const KINDS: [Kind, string][] = [
  ['agentVersion', 'Agent version'],
  ['cluster', 'MQTT cluster'],
  ['template', 'Apply a template'],
  ['patch', 'JSON merge patch'],
];

/** As the gateway spec's schema checks it: 1.2.3 or 1.2.3-rc.1. */
const VERSION_RE = /^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$/;

/** The merge patch typed in JSON: an object, or the reason it is not one. */
export function parsePatch(text: string): { patch: Record<string, unknown> } | { error: string } {
  if (!text.trim()) return { error: 'Type a JSON object, e.g. {"uplink": {"lingerMs": 100}}.' };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { error: `Not JSON: ${(e as Error).message}` };
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { error: 'Must be a JSON object: the fields of the gateway config to replace.' };
  return { patch: v as Record<string, unknown> };
}

export function BatchChanges() {
  const { s, can } = useScope();
  const [kind, setKind] = useState<Kind>('agentVersion');
  const [version, setVersion] = useState('');
  const [cluster, setCluster] = useState<string | null>(null);
  const [template, setTemplate] = useState('');
  const [patchText, setPatchText] = useState('');
  const [apiFields, setApiFields] = useState<Record<string, string>>({});
  const [templates, setTemplates] = useState<GatewayTemplate[] | null>(null);
  const [tplErr, setTplErr] = useState<unknown>(null);
  const own = useOwnClusters(s);
  useEffect(() => {
    fleet.templates(s).then((p) => { setTemplates(p.items); setTemplate((t) => t || p.items[0]?.name || ''); }).catch(setTplErr);
  }, [s.org, s.project]); // eslint-disable-line react-hooks/exhaustive-deps

  const parsed = useMemo(() => parsePatch(patchText), [patchText]);
  const versionBad = version !== '' && !VERSION_RE.test(version);
  // null while the chosen change is not complete.
  const change: BatchChange | null = (() => {
    switch (kind) {
      case 'agentVersion':
        return versionBad ? null : { merge_patch: { agentVersion: version || null } };
      case 'cluster':
        return { merge_patch: { clusterRef: cluster } };
      case 'template':
        return template ? { template } : null;
      case 'patch':
        return 'patch' in parsed ? { merge_patch: parsed.patch } : null;
    }
  })();
  const what = kind === 'agentVersion' ? (version ? `agent version ${version}` : 'no pinned agent version') : kind === 'cluster' ? (cluster ? `cluster ${cluster}` : 'no cluster') : kind === 'template' ? `template ${template}` : 'the merge patch';

  if (!can('project.write')) {
    return <><PageHead title="Batch changes" /><Notice kind="info">Your role does not allow changing gateways.</Notice></>;
  }
  return (
    <>
      <PageHead title="Batch changes" sub="One change to many gateways. Each gets its own new config version; one whose new config would not be valid is refused and left as it is." />
      <section className="card stack" aria-label="Batch change">
        <form className="form" onSubmit={(e) => e.preventDefault()}>
          <Field label="Change">
            {(p) => <select {...p} value={kind} onChange={(e) => { setKind(e.target.value as Kind); setApiFields({}); }}>{KINDS.map(([k, l]) => <option key={k} value={k}>{l}</option>)}</select>}
          </Field>
          {kind === 'agentVersion' && (
            <Field label="Agent version" hint="e.g. 0.5.0; empty to stop pinning a version" error={versionBad ? 'a version like 1.2.3 or 1.2.3-rc.1' : apiFields.merge_patch}>
              {(p) => <input {...p} value={version} autoComplete="off" onChange={(e) => setVersion(e.target.value.trim())} />}
            </Field>
          )}
          {kind === 'cluster' && (own.list ? <ClusterPicker value={cluster} onChange={setCluster} own={own.list} error={apiFields.merge_patch} /> : <ErrorNotice error={own.error} />)}
          {kind === 'template' && (
            <Field label="Template" hint={templates && !templates.length ? 'No templates yet: make one under Gateway templates.' : undefined} error={apiFields.template}>
              {(p) => <select {...p} value={template} onChange={(e) => setTemplate(e.target.value)}>{(templates ?? []).map((t) => <option key={t.name} value={t.name}>{t.title && t.title !== t.name ? `${t.name} (${t.title})` : t.name}</option>)}</select>}
            </Field>
          )}
          {kind === 'template' && <ErrorNotice error={tplErr} />}
          {kind === 'patch' && (
            <Field label="Merge patch (JSON)" hint={'Fields of the gateway config to replace; null removes one. E.g. {"uplink": {"lingerMs": 100}}'} error={(patchText && 'error' in parsed ? parsed.error : undefined) ?? apiFields.merge_patch}>
              {(p) => <textarea {...p} className="mono" rows={6} value={patchText} onChange={(e) => setPatchText(e.target.value)} />}
            </Field>
          )}
        </form>
        <ApplyToGateways change={change} what={what} onFields={setApiFields} />
      </section>
    </>
  );
}
