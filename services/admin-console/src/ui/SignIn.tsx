import { useState } from "preact/hooks";
import { expired, sessionFromToken, type Session } from "../lib/auth";

export function SignIn(props: { mode: string; reason: string | null; onSignIn: (s: Session) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = (e: Event) => {
    e.preventDefault();
    const session = sessionFromToken(token);
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
        <button type="submit" class="primary">
          Sign in
        </button>
      </form>
    </main>
  );
}
