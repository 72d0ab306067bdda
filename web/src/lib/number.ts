// A measured value as Weir shows it everywhere (the api's alert summaries
// use the same rule, `alerts::formats::fmt_value`): the tag's `decimals`
// when its config has them, else at most six significant digits without
// trailing zeros; then the unit after a space.
export function fmtMeasure(v: number | null | undefined, decimals?: number | null, unit?: string | null): string {
  if (v == null || Number.isNaN(v)) return '—';
  let text: string;
  if (!Number.isFinite(v)) text = String(v);
  else if (decimals != null) text = v.toFixed(decimals);
  else if (Number.isInteger(v)) text = String(v);
  else text = String(Number(v.toPrecision(6)));
  return unit ? `${text} ${unit}` : text;
}
