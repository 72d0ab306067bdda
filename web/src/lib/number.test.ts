import { describe, expect, it } from 'vitest';
import { fmtMeasure } from './number';

describe('fmtMeasure', () => {
  it('uses the tag decimals and unit', () => {
    expect(fmtMeasure(0.18341134607608112, 2, 'mg/L')).toBe('0.18 mg/L');
    expect(fmtMeasure(0.2, 2, 'mg/L')).toBe('0.20 mg/L');
    expect(fmtMeasure(7, 0, null)).toBe('7');
  });
  it('without decimals keeps six significant digits', () => {
    expect(fmtMeasure(3.141590118408203)).toBe('3.14159');
    expect(fmtMeasure(0.18341134607608112, null, 'NTU')).toBe('0.183411 NTU');
    expect(fmtMeasure(42)).toBe('42');
  });
  it('shows a dash for no value', () => {
    expect(fmtMeasure(null, 2, 'bar')).toBe('—');
  });
});
