// What a role allows, as admin-api's ROLE_PERMISSIONS says (callback_admin_api/auth.py): the
// console shows only the controls the API would accept.
import type { Session } from "./auth";

export type Permission = "read" | "operate" | "configure" | "export";

export const ROLE_PERMISSIONS: Record<string, readonly Permission[]> = {
  callback_monitor: ["read"],
  callback_supervisor: ["read", "operate", "export"],
  callback_administrator: ["read", "operate", "configure", "export"],
};

export function can(session: Pick<Session, "roles"> | null, permission: Permission): boolean {
  return !!session && session.roles.some((r) => ROLE_PERMISSIONS[r]?.includes(permission));
}
