// Status in words for people, not codes.
import type { Condition } from '../api/types';

const NEGATIVE = new Set(['Degraded', 'Failed', 'Stalled', 'Paused']);
const PROGRESS = new Set(['Progressing', 'Upgrading', 'Scaling']);

export function splitCamel(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());
}

/** "Ready" True -> "Ready: yes. <message>"; a sentence a technician understands. */
export function conditionWords(c: Condition): { text: string; tone: 'ok' | 'bad' | 'warn' | 'info' } {
  const t = splitCamel(c.type);
  const msg = c.message ? ` ${c.message.replace(/\.?$/, '.')}` : '';
  const reason = c.reason ? ` (${splitCamel(c.reason).toLowerCase()})` : '';
  if (c.status === 'Unknown') return { text: `${t}: not known yet${reason}.${msg}`, tone: 'info' };
  const yes = c.status === 'True';
  if (NEGATIVE.has(c.type)) return { text: `${t}: ${yes ? 'yes' : 'no'}${reason}.${msg}`, tone: yes ? 'bad' : 'ok' };
  if (PROGRESS.has(c.type)) return { text: `${t}: ${yes ? 'in progress' : 'idle'}${reason}.${msg}`, tone: yes ? 'warn' : 'ok' };
  return { text: `${t}: ${yes ? 'yes' : 'no'}${reason}.${msg}`, tone: yes ? 'ok' : 'bad' };
}

export function phaseTone(phase?: string | null): 'ok' | 'bad' | 'warn' | 'info' {
  const p = (phase ?? '').toLowerCase();
  if (['running', 'ready', 'healthy', 'online', 'reachable'].includes(p)) return 'ok';
  if (['failed', 'degraded', 'offline', 'unreachable', 'error'].includes(p)) return 'bad';
  if (['pending', 'creating', 'scaling', 'upgrading', 'progressing', 'deleting'].includes(p)) return 'warn';
  return 'info';
}

export function gatewayStatus(status?: string | null): { label: string; tone: 'ok' | 'bad' | 'warn' | 'info' } {
  switch ((status ?? '').toLowerCase()) {
    case 'online':
      return { label: 'Online', tone: 'ok' };
    case 'offline':
      return { label: 'Offline', tone: 'bad' };
    case '':
    case 'never-seen':
    case 'pending':
    case 'unknown':
      return { label: 'Not enrolled yet', tone: 'info' };
    default:
      return { label: splitCamel(status!), tone: 'warn' };
  }
}
