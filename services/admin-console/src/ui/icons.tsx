// Inline SVG icons (no icon font: they render on any machine), each with a text label.
import type { JSX } from "preact";

function Svg(props: { children: JSX.Element | JSX.Element[]; label?: string; class?: string }) {
  return (
    <svg
      class={`icon ${props.class ?? ""}`}
      viewBox="0 0 24 24"
      width="18"
      height="18"
      aria-hidden={props.label ? undefined : "true"}
      role={props.label ? "img" : undefined}
      aria-label={props.label}
      focusable="false"
    >
      {props.children}
    </svg>
  );
}

export const WarningIcon = (p: { label?: string }) => (
  <Svg label={p.label} class="icon-warning">
    <path d="M12 2 1 21h22L12 2z" fill="#f0a500" stroke="#8a5a00" stroke-width="1.2" />
    <rect x="11" y="8" width="2" height="7" fill="#1f1f1f" />
    <rect x="11" y="16.5" width="2" height="2" fill="#1f1f1f" />
  </Svg>
);

export const CalendarIcon = (p: { label?: string }) => (
  <Svg label={p.label} class="icon-calendar">
    <rect x="3" y="5" width="18" height="16" rx="2" fill="#fff" stroke="#2f5d8a" stroke-width="2" />
    <rect x="3" y="5" width="18" height="5" fill="#2f5d8a" />
    <rect x="7" y="2" width="2" height="5" fill="#2f5d8a" />
    <rect x="15" y="2" width="2" height="5" fill="#2f5d8a" />
    <rect x="7" y="13" width="3" height="3" fill="#2f5d8a" />
  </Svg>
);

export const PencilIcon = () => (
  <Svg>
    <path d="M4 20h4L19 9l-4-4L4 16v4z" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round" />
    <path d="M13 7l4 4" stroke="currentColor" stroke-width="2" />
  </Svg>
);

export const RecreateIcon = () => (
  <Svg>
    <path d="M20 12a8 8 0 1 1-2.3-5.6" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" />
    <path d="M20 3v6h-6" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round" />
  </Svg>
);

export const ChevronIcon = (p: { open: boolean }) => (
  <Svg>
    <path
      d={p.open ? "M6 9l6 6 6-6" : "M9 6l6 6-6 6"}
      fill="none"
      stroke="currentColor"
      stroke-width="2.2"
      stroke-linecap="round"
      stroke-linejoin="round"
    />
  </Svg>
);
