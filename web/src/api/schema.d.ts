// Placeholder until weir-api serves /api/v1/openapi.json: run `npm run gen:api`.
export type paths = Record<string, never>;
export type components = { schemas: Record<string, never> };
