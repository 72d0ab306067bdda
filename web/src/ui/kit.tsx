// The console's small component kit.
import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useId,
  useRef,
  useState,
  type ButtonHTMLAttributes,
  type ReactNode,
} from 'react';
import { ApiError } from '../api/http';

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

export function Spinner({ label = 'Loading' }: { label?: string }) {
  return <span className="spinner" role="status" aria-label={label} />;
}

export function Button({
  busy,
  children,
  variant,
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & { busy?: boolean; variant?: 'primary' | 'danger' | 'ghost' | 'link' }) {
  return (
    <button type="button" className={variant} disabled={busy || rest.disabled} aria-busy={busy || undefined} {...rest}>
      {busy && <Spinner label="Working" />}
      {children}
    </button>
  );
}

export function Field({
  label,
  hint,
  error,
  children,
  id,
}: {
  label: ReactNode;
  hint?: ReactNode;
  error?: string;
  children: (props: { id: string; 'aria-invalid'?: boolean; 'aria-describedby'?: string }) => ReactNode;
  id?: string;
}) {
  const auto = useId();
  const fid = id ?? auto;
  const errId = `${fid}-err`;
  const hintId = `${fid}-hint`;
  const described = [error ? errId : null, hint ? hintId : null].filter(Boolean).join(' ') || undefined;
  return (
    <div className="field">
      <label htmlFor={fid}>{label}</label>
      {children({ id: fid, 'aria-invalid': error ? true : undefined, 'aria-describedby': described })}
      {error && (
        <span className="error" id={errId} role="alert">
          {error}
        </span>
      )}
      {hint && (
        <span className="hint" id={hintId}>
          {hint}
        </span>
      )}
    </div>
  );
}

export function Notice({ kind = 'info', children }: { kind?: 'info' | 'ok' | 'error' | 'warn'; children: ReactNode }) {
  return (
    <div className={`notice ${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
      <div>{children}</div>
    </div>
  );
}

export function ErrorNotice({ error }: { error: unknown }) {
  if (!error) return null;
  return <Notice kind="error">{errorText(error)}</Notice>;
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <strong>{title}</strong>
      {children}
    </div>
  );
}

export function Badge({ kind, children, plain }: { kind?: 'ok' | 'bad' | 'warn' | 'info'; children: ReactNode; plain?: boolean }) {
  return <span className={`badge ${kind ?? ''} ${plain ? 'plain' : ''}`}>{children}</span>;
}

export function PageHead({ title, sub, actions }: { title: string; sub?: ReactNode; actions?: ReactNode }) {
  return (
    <div className="page-head">
      <div>
        <h1>{title}</h1>
        {sub && <p>{sub}</p>}
      </div>
      {actions && <div className="row">{actions}</div>}
    </div>
  );
}

export function Dialog({
  title,
  children,
  footer,
  onClose,
}: {
  title: string;
  children: ReactNode;
  footer?: ReactNode;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDivElement>(null);
  const tid = useId();
  useEffect(() => {
    const prev = document.activeElement as HTMLElement | null;
    const first = ref.current?.querySelector<HTMLElement>('input, select, textarea, button');
    first?.focus();
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', onKey);
    return () => {
      window.removeEventListener('keydown', onKey);
      prev?.focus?.();
    };
  }, [onClose]);
  return (
    <div className="overlay" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div className="dialog" role="dialog" aria-modal="true" aria-labelledby={tid} ref={ref}>
        <header id={tid}>{title}</header>
        <div className="body">{children}</div>
        {footer && <footer>{footer}</footer>}
      </div>
    </div>
  );
}

/** Delete with typed confirmation: the button works only once the name is typed. */
export function ConfirmDelete({
  what,
  name,
  consequence,
  onConfirm,
  onClose,
}: {
  what: string;
  name: string;
  consequence?: ReactNode;
  onConfirm: (typed: string) => Promise<unknown>;
  onClose: () => void;
}) {
  const [typed, setTyped] = useState('');
  const act = useAction();
  return (
    <Dialog
      title={`Delete ${what} ${name}`}
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button
            variant="danger"
            disabled={typed !== name}
            busy={act.busy}
            onClick={() => act.run(() => onConfirm(typed), { then: onClose })}
          >
            Delete {what}
          </Button>
        </>
      }
    >
      <div className="stack">
        {consequence && <Notice kind="warn">{consequence}</Notice>}
        <Field label={<>Type <code>{name}</code> to confirm</>}>
          {(p) => <input {...p} value={typed} autoComplete="off" onChange={(e) => setTyped(e.target.value)} />}
        </Field>
        <ErrorNotice error={act.error} />
      </div>
    </Dialog>
  );
}

export function Copyable({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [copied, setCopied] = useState<null | 'ok' | 'fail'>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied('ok');
    } catch {
      setCopied('fail');
    }
    setTimeout(() => setCopied(null), 2000);
  };
  return (
    <div className="copy">
      <code data-testid="copy-text">{text}</code>
      <button type="button" onClick={copy} aria-label={`${label}: ${text}`}>
        {copied === 'ok' ? 'Copied' : copied === 'fail' ? 'Select and copy' : label}
      </button>
    </div>
  );
}

// ---------- toasts: the outcome of every action ----------

interface Toast {
  id: number;
  kind: 'ok' | 'error' | 'info';
  text: string;
}
const ToastCtx = createContext<(kind: Toast['kind'], text: string) => void>(() => {});

export function ToastProvider({ children }: { children: ReactNode }) {
  const [list, setList] = useState<Toast[]>([]);
  const push = useCallback((kind: Toast['kind'], text: string) => {
    const id = Date.now() + Math.random();
    setList((l) => [...l.slice(-3), { id, kind, text }]);
    setTimeout(() => setList((l) => l.filter((t) => t.id !== id)), kind === 'error' ? 9000 : 4500);
  }, []);
  return (
    <ToastCtx.Provider value={push}>
      {children}
      <div className="toasts" aria-live="polite">
        {list.map((t) => (
          <div key={t.id} className={`notice ${t.kind}`} role="status">
            {t.text}
          </div>
        ))}
      </div>
    </ToastCtx.Provider>
  );
}

export const useToast = () => useContext(ToastCtx);

/** Run an action: busy while it runs, the error in words, a toast on success. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const toast = useToast();
  const run = useCallback(
    async <T,>(fn: () => Promise<T>, opts: { ok?: string; then?: (v: T) => void } = {}): Promise<T | undefined> => {
      setBusy(true);
      setError(null);
      try {
        const v = await fn();
        if (opts.ok) toast('ok', opts.ok);
        opts.then?.(v);
        return v;
      } catch (e) {
        setError(e);
        return undefined;
      } finally {
        setBusy(false);
      }
    },
    [toast],
  );
  const fields = error instanceof ApiError ? error.fieldMap() : {};
  return { busy, error, run, fields, reset: () => setError(null) };
}

export function fmtTime(s?: string | number | null): string {
  if (s === undefined || s === null || s === '') return '—';
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtAgo(s?: string | null, now = Date.now()): string {
  if (!s) return 'never';
  const t = Date.parse(s);
  if (Number.isNaN(t)) return s;
  const sec = Math.round((now - t) / 1000);
  if (sec < 5) return 'just now';
  if (sec < 60) return `${sec} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}
