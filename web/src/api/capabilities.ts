// Which routes this api offers, read once from its own OpenAPI document.
// A page whose endpoint is absent shows "not available on this server"
// instead of failing (the console may be newer than the api it talks to).
import { call } from './http';

type Doc = { paths?: Record<string, Record<string, unknown>> };

let routes: Map<string, Set<string>> | null = null;
let loading: Promise<void> | null = null;

export function setRoutesFromDoc(doc: Doc | null) {
  if (!doc?.paths) {
    routes = null;
    return;
  }
  routes = new Map();
  for (const [path, ops] of Object.entries(doc.paths)) {
    routes.set(path, new Set(Object.keys(ops).map((m) => m.toUpperCase())));
  }
}

export function loadCapabilities(): Promise<void> {
  if (!loading) {
    loading = call<Doc>('GET', '/api/v1/openapi.json', { quiet401: true })
      .then(setRoutesFromDoc)
      .catch(() => setRoutesFromDoc(null));
  }
  return loading;
}

/** false only when the api's document is known and lacks the route. */
export function offers(method: string, template: string): boolean {
  if (!routes) return true;
  const ops = routes.get(template);
  return !!ops && ops.has(method.toUpperCase());
}

/** Known for sure that the api serves this route. */
export function knownToOffer(method: string, template: string): boolean {
  return !!routes?.get(template)?.has(method.toUpperCase());
}
