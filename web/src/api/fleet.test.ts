import { describe, expect, it } from 'vitest';
import { fromApiCluster, fromApiGateway, meFromApi } from './endpoints';
import { pointerToPath } from '../pages/Gateways';
import { fx } from '../test/util';

describe('the api’s answers as the console shows them', () => {
  it('reads a gateway with its rollout entry', () => {
    const g = fromApiGateway(
      fx.gateway({ name: 'north', version: 4, bundle_version: 3, applied_version: 2, online: null, spec: { site: { name: 'North' }, mode: 'external', devices: [{ name: 'd', adapter: 'simulator', groups: [] }], uplink: { qos: 1 } } }),
      fx.rollout({ gateway: 'north', desired_version: 3, applied_version: 3, online: true, last_heartbeat: '2026-01-01T00:00:00Z', last_error: null, agent_version: '0.1.0' }),
    );
    expect(g).toMatchObject({ name: 'north', version: 4, desired_version: 3, applied_version: 3, status: 'online', agent_version: '0.1.0', site: { name: 'North' } });
    expect(g.config.devices).toHaveLength(1);
    expect(fromApiGateway(fx.gateway({ online: false, last_heartbeat: '2026-01-01T00:00:00Z' })).status).toBe('offline');
    expect(fromApiGateway(fx.gateway()).status).toBe('never-seen');
  });

  it('reads a kubernetes cluster’s spec and status, and an external one’s health', () => {
    const k = fromApiCluster(fx.cluster({ name: 'main', backend: 'kubernetes', spec: { version: '5.8.6', replicas: 3 }, status: { phase: 'Running', readyReplicas: 2, conditions: [{ type: 'Ready', status: 'False', reason: 'x', message: 'y' }], endpoints: ['mqtt://a:1883'] } }));
    expect(k).toMatchObject({ version: '5.8.6', replicas: 3, ready_nodes: 2, phase: 'Running', endpoints: ['mqtt://a:1883'] });
    expect(k.conditions).toHaveLength(1);
    const e = fromApiCluster(fx.cluster({ name: 'site', backend: 'external', url: 'mqtt://b:1883', health: { reachable: true, rtt_ms: 3, checked_at: '2026-01-01T00:00:00Z' }, endpoints: ['mqtt://b:1883'] }));
    expect(e.phase).toBe('Reachable');
  });

  it('reads the roles /me names', () => {
    const m = meFromApi({
      user: fx.user({ email: 'a@b' }),
      auth_method: 'session',
      orgs: [{ org: 'riverside', name: 'Riverside Water', role: 'org-admin' }],
      projects: [{ org: 'riverside', project: 'north', name: 'North Plant', role: 'project-viewer' }],
    });
    expect(m.email).toBe('a@b');
    expect(m.memberships).toEqual([
      { org: 'riverside', org_name: 'Riverside Water', project: null, role: 'org-admin' },
      { org: 'riverside', project: 'north', project_name: 'North Plant', role: 'project-viewer' },
    ]);
  });

  it('names JSON Patch paths the way the editor does', () => {
    expect(pointerToPath('/devices/0/groups/1/intervalMs')).toBe('devices[0].groups[1].intervalMs');
    expect(pointerToPath('/site/a~1b')).toBe('site.a/b');
  });
});
