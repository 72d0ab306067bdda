// Choosing a gateway's MQTT cluster (`spec.clusterRef`): one of the
// project's own clusters, or one another project shares with it. The api
// lists only the project's own clusters (it does not tell a project the
// names of other projects' clusters), so a shared one is typed by name and
// the api accepts it only if the share exists.
import { useEffect, useState } from 'react';
import { clusters, type Scope } from '../api/endpoints';
import type { Cluster } from '../api/types';
import { Field } from '../ui/kit';

const SHARED = '#shared';

/** The project's own clusters; `error` when they could not be listed. */
export function useOwnClusters(s: Scope) {
  const [list, setList] = useState<Cluster[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    clusters
      .list(s)
      .then((p) => live && setList(p.items))
      .catch((e) => live && (setError(e), setList([])));
    return () => { live = false; };
  }, [s.org, s.project]);
  return { list, error };
}

export function ClusterPicker({
  value,
  onChange,
  own,
  error,
  disabled,
}: {
  value: string | null;
  onChange: (v: string | null) => void;
  own: Cluster[];
  /** The api's message for `spec.clusterRef`. */
  error?: string;
  disabled?: boolean;
}) {
  const [sharedMode, setSharedMode] = useState(false);
  // A current cluster that is not one of the project's own is a shared one.
  const shared = sharedMode || (!!value && !own.some((c) => c.name === value));
  return (
    <>
      <Field
        label="MQTT cluster"
        hint={
          own.length
            ? 'The broker the agent publishes readings to.'
            : 'This project has no cluster yet: create one under MQTT clusters, or name one another project shares with this one.'
        }
        error={shared ? undefined : error}
      >
        {(p) => (
          <select
            {...p}
            disabled={disabled}
            value={shared ? SHARED : (value ?? '')}
            onChange={(e) => {
              const v = e.target.value;
              setSharedMode(v === SHARED);
              onChange(v === SHARED || v === '' ? null : v);
            }}
          >
            <option value="">No cluster yet</option>
            {own.map((c) => (
              <option key={c.name} value={c.name}>
                {c.title && c.title !== c.name ? `${c.name} (${c.title})` : c.name}
              </option>
            ))}
            <option value={SHARED}>A cluster another project shares with this one…</option>
          </select>
        )}
      </Field>
      {shared && (
        <Field
          label="Shared cluster name"
          hint="Its name in the project that owns it. Weir accepts it only if that project shares the cluster with this one."
          error={error}
        >
          {(p) => <input {...p} disabled={disabled} value={value ?? ''} onChange={(e) => onChange(e.target.value.trim() || null)} autoComplete="off" />}
        </Field>
      )}
    </>
  );
}
