// What each role may do, as the service's roles grant it (SPEC §4). The page uses it only to
// hide what would be refused; the service still refuses it.

const GRANTS = {
  admin: ['read-chats', 'write-chats', 'read-health', 'admin-events', 'read-audit', 'manage-retention', 'manage-keys'],
  operator: ['read-chats', 'write-chats'],
  viewer: ['read-chats', 'read-health'],
  auditor: ['read-audit'],
};

/** The permission each page needs. */
export const PAGE_NEEDS = {
  overview: 'read-health',
  chats: 'read-chats',
  audit: 'read-audit',
  retention: 'manage-retention',
  keys: 'manage-keys',
  'rate-limits': 'read-health',
};

export function allows(role, permission) {
  return (GRANTS[role] ?? []).includes(permission);
}
