import { useParams } from 'react-router';
import { useSession } from './session';
import { can, type Permission } from './lib/permissions';

/** The org and project in the URL, and what the user may do there. */
export function useScope() {
  const { org = '', project = '' } = useParams();
  const { me } = useSession();
  const where = { org, project: project || null };
  return {
    org,
    project,
    s: { org, project },
    base: project ? `/o/${org}/p/${project}` : `/o/${org}`,
    can: (perm: Permission) => can(me, perm, where),
  };
}
