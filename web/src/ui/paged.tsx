// Pagination for every list. The audit log follows the api's cursor (the
// console keeps the cursors it passed so "Previous" works too); the other
// lists come whole from the api and are paged here.
import { useCallback, useEffect, useRef, useState } from 'react';
import type { Page } from '../api/types';
import { Button, ErrorNotice, Spinner } from './kit';

export const PAGE_SIZE = 25;

export function usePaged<T>(
  load: (q: { cursor?: string | null; limit: number }) => Promise<Page<T>>,
  deps: unknown[],
  limit = PAGE_SIZE,
) {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<Page<T> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const cursor = cursors[cursors.length - 1];

  useEffect(() => {
    setCursors([null]);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  useEffect(() => {
    let live = true;
    setLoading(true);
    loadRef
      .current({ cursor, limit })
      .then((p) => {
        if (!live) return;
        // A server without pagination hands back everything: page it here.
        if (!p.next_cursor && p.items.length > limit) {
          const start = cursor ? Number(cursor) : 0;
          const items = p.items.slice(start, start + limit);
          const next = start + limit < p.items.length ? String(start + limit) : null;
          p = { items, next_cursor: next, total: p.items.length };
          (p as Page<T> & { local?: boolean }).local = true;
        }
        setPage(p);
        setError(null);
      })
      .catch((e) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [cursor, tick, ...deps]);

  const next = useCallback(() => page?.next_cursor && setCursors((c) => [...c, page.next_cursor!]), [page]);
  const prev = useCallback(() => setCursors((c) => (c.length > 1 ? c.slice(0, -1) : c)), []);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return {
    items: page?.items ?? [],
    page,
    error,
    loading,
    pageNo: cursors.length,
    hasNext: !!page?.next_cursor,
    hasPrev: cursors.length > 1,
    next,
    prev,
    reload,
  };
}

export function Pager({ p }: { p: ReturnType<typeof usePaged<unknown>> | ReturnType<typeof usePaged<any>> }) {
  if (!p.hasNext && !p.hasPrev) return null;
  return (
    <nav className="pager" aria-label="Pages">
      <span>Page {p.pageNo}</span>
      <Button onClick={p.prev} disabled={!p.hasPrev || p.loading}>
        Previous
      </Button>
      <Button onClick={p.next} disabled={!p.hasNext || p.loading}>
        Next
      </Button>
    </nav>
  );
}

/** Loading / error / empty states around a list. */
export function ListState({
  p,
  empty,
  children,
}: {
  p: { loading: boolean; error: unknown; items: unknown[]; page: unknown };
  empty: React.ReactNode;
  children: React.ReactNode;
}) {
  if (p.error) return <ErrorNotice error={p.error} />;
  if (p.loading && !p.page)
    return (
      <div className="empty">
        <Spinner /> Loading…
      </div>
    );
  if (!p.items.length) return <>{empty}</>;
  return <>{children}</>;
}
