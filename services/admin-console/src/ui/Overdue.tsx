import { WarningIcon } from "./icons";

/** The overdue warning icon; its message shows on hover and on keyboard focus. */
export function OverdueWarning({ id, message }: { id: string; message: string | null | undefined }) {
  const tipId = `overdue-${id}`;
  return (
    <span class="tip" tabIndex={0} aria-describedby={tipId} data-testid="overdue">
      <WarningIcon label="Overdue" />
      <span role="tooltip" id={tipId} class="tip-text">
        {message ?? "Overdue"}
      </span>
    </span>
  );
}
