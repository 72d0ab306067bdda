// Who is signed in, and what they may do.
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import { auth } from './api/endpoints';
import { ApiError, UNAUTHENTICATED_EVENT } from './api/http';
import type { Me } from './api/types';

interface SessionValue {
  me: Me | null;
  loading: boolean;
  /** Could not reach the api at all (not the same as "signed out"). */
  offline: unknown;
  refresh: () => Promise<Me | null>;
  signOut: () => Promise<void>;
  setMe: (m: Me | null) => void;
}

const Ctx = createContext<SessionValue>({
  me: null,
  loading: true,
  offline: null,
  refresh: async () => null,
  signOut: async () => {},
  setMe: () => {},
});

export function SessionProvider({ children, initial }: { children: ReactNode; initial?: Me | null }) {
  const [me, setMe] = useState<Me | null>(initial ?? null);
  const [loading, setLoading] = useState(initial === undefined);
  const [offline, setOffline] = useState<unknown>(null);

  const refresh = useCallback(async () => {
    try {
      const m = await auth.me();
      setMe(m);
      setOffline(null);
      return m;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
        setMe(null);
        setOffline(null);
      } else setOffline(e);
      return null;
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    if (initial === undefined) void refresh();
  }, [initial, refresh]);

  useEffect(() => {
    const onGone = () => setMe(null);
    window.addEventListener(UNAUTHENTICATED_EVENT, onGone);
    return () => window.removeEventListener(UNAUTHENTICATED_EVENT, onGone);
  }, []);

  const signOut = useCallback(async () => {
    try {
      await auth.logout();
    } finally {
      setMe(null);
    }
  }, []);

  return <Ctx.Provider value={{ me, loading, offline, refresh, signOut, setMe }}>{children}</Ctx.Provider>;
}

export const useSession = () => useContext(Ctx);
