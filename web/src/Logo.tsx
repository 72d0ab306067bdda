export function Logo({ size = 26 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 32 32" aria-hidden="true">
      <rect width="32" height="32" rx="7" fill="#1c6bb0" />
      <path d="M5 21 Q10.5 12 16 21 T27 21" stroke="#fff" strokeWidth="3" fill="none" strokeLinecap="round" />
      <rect x="5" y="8" width="22" height="3" rx="1.5" fill="#9cc7ef" />
    </svg>
  );
}
