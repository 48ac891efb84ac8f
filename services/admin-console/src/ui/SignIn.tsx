import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { expired, sessionFromToken, type Session } from "../lib/auth";
import { beginSignIn, issuerClaims, type ConsoleConfig } from "../lib/oidc";

export function SignIn(props: {
  mode: string;
  reason: string | null;
  onSignIn: (s: Session) => void;
  config?: ConsoleConfig | null;
  completing?: boolean;
}) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [redirecting, setRedirecting] = useState(false);
  const [oidcError, setOidcError] = useState<string | null>(null);
  const oidc = props.mode === "oidc" && !!props.config;
  const startSignIn = () => {
    setRedirecting(true);
    setOidcError(null);
    beginSignIn(props.config!, window.location, sessionStorage)
      .then((url) => window.location.assign(url))
      .catch((e: Error) => {
        setRedirecting(false);
        setOidcError(e.message);
      });
  };
  const submit = (e: Event) => {
    e.preventDefault();
    const session = sessionFromToken(token, issuerClaims(props.config ?? null));
    if (!session) return setError("This is not a token: paste the whole JWT (three parts separated by dots).");
    if (expired(session)) return setError("This token has expired: mint a new one.");
    if (!session.roles.length) return setError("This token grants no role.");
    props.onSignIn(session);
  };
  return (
    <main class="signin">
      <form onSubmit={submit} class="card" aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to the Callback console</h1>
        {props.reason && (
          <p class="notice" role="alert">
            {props.reason}
          </p>
        )}
        {oidc && (
          <div class="oidc">
            {props.completing ? (
              <p role="status">Completing sign-in…</p>
            ) : (
              <>
                <p>Sign in with your organisation's account.</p>
                <button type="button" class="primary" disabled={redirecting} onClick={startSignIn}>
                  Sign in
                </button>
              </>
            )}
          </div>
        )}
        {oidcError && (
          <p class="field-error" role="alert">
            {oidcError}
          </p>
        )}
        <TokenFields oidc={oidc}>
        <p>
          Development sign-in ({props.mode}): paste a token minted with{" "}
          <code>uv run callback-admin-token --sub NAME --role callback_supervisor --service '*'</code>, or open
          the link <code>make up</code> prints.
        </p>
        <label for="token">Token</label>
        <textarea
          id="token"
          rows={4}
          value={token}
          autocomplete="off"
          spellcheck={false}
          aria-invalid={!!error}
          aria-describedby={error ? "token-error" : undefined}
          onInput={(e) => setToken((e.target as HTMLTextAreaElement).value)}
        />
        {error && (
          <p id="token-error" class="field-error">
            {error}
          </p>
        )}
        <button type="submit" class={oidc ? "" : "primary"}>
          {oidc ? "Sign in with this token" : "Sign in"}
        </button>
        </TokenFields>
      </form>
    </main>
  );
}

/** The pasted-token form: the whole card in development, folded away beside OIDC sign-in. */
function TokenFields(props: { oidc: boolean; children: ComponentChildren }) {
  if (!props.oidc) return <>{props.children}</>;
  return (
    <details class="dev-token">
      <summary>Development sign-in with a token</summary>
      {props.children}
    </details>
  );
}
