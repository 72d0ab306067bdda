// Revoke a gateway's agent: for a stolen or replaced gateway PC. The
// gateway and its configuration stay; only the agent's credentials go.
import { useState } from 'react';
import { Link } from 'react-router';
import { gateways, type Scope } from '../api/endpoints';
import { Button, Dialog, ErrorNotice, Notice, useAction } from '../ui/kit';

export function RevokeAgentButton({ s, gateway, onRevoked }: { s: Scope; gateway: string; onRevoked: () => void }) {
  const [asking, setAsking] = useState(false);
  const act = useAction();
  return (
    <>
      <Button onClick={() => setAsking(true)}>Revoke agent</Button>
      {asking && (
        <Dialog
          title={`Revoke the agent of ${gateway}?`}
          onClose={() => setAsking(false)}
          footer={
            <>
              <Button onClick={() => setAsking(false)}>Cancel</Button>
              <Button
                variant="danger"
                busy={act.busy}
                onClick={() =>
                  act.run(() => gateways.revokeAgent(s, gateway), {
                    ok: `Revoked the agent of ${gateway}.`,
                    then: () => {
                      setAsking(false);
                      onRevoked();
                    },
                  })
                }
              >
                Revoke agent
              </Button>
            </>
          }
        >
          <div className="stack">
            <Notice kind="warn">
              The agent at the site stops at once: its sessions end, its key is refused (no new configs) and its broker login is
              removed. On a broker that takes Weir’s tokens, the token it already holds works until it expires and is not renewed.
            </Notice>
            <p style={{ margin: 0 }}>
              The gateway and its configuration stay. To run it again, issue an enrollment token and enroll the agent again.
            </p>
            <ErrorNotice error={act.error} />
          </div>
        </Dialog>
      )}
    </>
  );
}

/** What the revocation did, and the way back. */
export function AgentRevoked({ enrollment }: { enrollment: string }) {
  return (
    <Notice kind="ok">
      <span data-testid="agent-revoked">
        The agent is revoked: Weir refuses it and its broker login is removed. To bring the gateway back, <Link to={enrollment}>issue an enrollment token</Link>{' '}
        and enroll the agent again.
      </span>
    </Notice>
  );
}
