import { Navigate, Route, Routes, useLocation } from 'react-router';
import { useEffect, useState } from 'react';
import { Layout } from './Layout';
import { useSession } from './session';
import { orgs } from './api/endpoints';
import { SignIn } from './pages/SignIn';
import { Account } from './pages/Account';
import { Users } from './pages/Users';
import { OrgHome, OrgList } from './pages/Orgs';
import { Members } from './pages/Members';
import { Tokens } from './pages/Tokens';
import { Audit } from './pages/Audit';
import { Overview } from './pages/Overview';
import { ClusterDetail, ClusterList, ClusterWizard } from './pages/Clusters';
import { GatewayDetail, GatewayList } from './pages/Gateways';
import { Alerts } from './pages/Alerts';
import { Credentials } from './pages/Credentials';
import { TemplateDetail, TemplateList } from './pages/Templates';
import { BatchChanges } from './pages/BatchChanges';
import { Rollout } from './pages/Rollout';
import { FleetEvents } from './pages/FleetEvents';
import { ErrorNotice, Spinner } from './ui/kit';

function RequireSignIn({ children }: { children: React.ReactNode }) {
  const { me, loading, offline, refresh } = useSession();
  const loc = useLocation();
  if (loading)
    return (
      <div className="empty" style={{ paddingTop: '20vh' }}>
        <Spinner /> Loading Weir…
      </div>
    );
  if (offline)
    return (
      <div className="content stack">
        <ErrorNotice error={offline} />
        <div><button onClick={() => void refresh()}>Try again</button></div>
      </div>
    );
  if (!me) return <Navigate to="/signin" replace state={{ from: loc.pathname + loc.search }} />;
  return <>{children}</>;
}

/** "/" goes to the user's only org, or the list of orgs. */
function Home() {
  const [to, setTo] = useState<string | null>(null);
  useEffect(() => {
    orgs
      .list()
      .then((p) => setTo(p.items.length === 1 ? `/o/${p.items[0].slug}` : '/orgs'))
      .catch(() => setTo('/orgs'));
  }, []);
  return to ? <Navigate to={to} replace /> : <Spinner />;
}

export function App() {
  return (
    <Routes>
      <Route path="/signin" element={<SignIn />} />
      <Route
        element={
          <RequireSignIn>
            <Layout />
          </RequireSignIn>
        }
      >
        <Route index element={<Home />} />
        <Route path="orgs" element={<OrgList />} />
        <Route path="account" element={<Account />} />
        <Route path="users" element={<Users />} />
        <Route path="o/:org" element={<OrgHome />} />
        <Route path="o/:org/members" element={<Members />} />
        <Route path="o/:org/tokens" element={<Tokens />} />
        <Route path="o/:org/audit" element={<Audit />} />
        <Route path="o/:org/p/:project" element={<Overview />} />
        <Route path="o/:org/p/:project/members" element={<Members />} />
        <Route path="o/:org/p/:project/clusters" element={<ClusterList />} />
        <Route path="o/:org/p/:project/clusters/new" element={<ClusterWizard />} />
        <Route path="o/:org/p/:project/clusters/:cluster" element={<ClusterDetail />} />
        <Route path="o/:org/p/:project/gateways" element={<GatewayList />} />
        <Route path="o/:org/p/:project/gateways/:gateway" element={<GatewayDetail />} />
        <Route path="o/:org/p/:project/gateways/:gateway/:tab" element={<GatewayDetail />} />
        <Route path="o/:org/p/:project/alerts" element={<Alerts />} />
        <Route path="o/:org/p/:project/alerts/:tab" element={<Alerts />} />
        <Route path="o/:org/p/:project/credentials" element={<Credentials />} />
        <Route path="o/:org/p/:project/templates" element={<TemplateList />} />
        <Route path="o/:org/p/:project/templates/:template" element={<TemplateDetail />} />
        <Route path="o/:org/p/:project/batch" element={<BatchChanges />} />
        <Route path="o/:org/p/:project/rollout" element={<Rollout />} />
        <Route path="o/:org/p/:project/fleet-events" element={<FleetEvents />} />
        <Route path="*" element={<div className="empty"><strong>Page not found</strong>Use the menu on the left.</div>} />
      </Route>
    </Routes>
  );
}
