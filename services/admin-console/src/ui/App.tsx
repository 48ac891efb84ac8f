import { useEffect, useMemo, useState } from "preact/hooks";
import { makeApi, type ServiceView } from "../api/client";
import {
  clearSession,
  rememberIssuer,
  saveSession,
  sessionFromToken,
  storedSession,
  takeTokenFromLocation,
  type Session,
} from "../lib/auth";
import { completeSignIn, isAuthResponse, issuerClaims, type ConsoleConfig } from "../lib/oidc";
import { can } from "../lib/roles";
import { loadPrefs, savePrefs, type Prefs } from "../lib/storage";
import { CallbackTab } from "./CallbackTab";
import { SignIn } from "./SignIn";
import { Tools } from "./Tools";
import type { Ctx } from "./context";

type Tab = "callback" | "tools";

export function App() {
  const [session, setSession] = useState<Session | null>(() => {
    return takeTokenFromLocation(window.location, window.history, sessionStorage) ?? storedSession(sessionStorage);
  });
  const [signInReason, setSignInReason] = useState<string | null>(null);
  const [signInMode, setSignInMode] = useState<string>("token");
  const [config, setConfig] = useState<ConsoleConfig | null>(null);
  // back from the identity provider (?code=&state=): the code is exchanged once the config is in
  const [completing, setCompleting] = useState(() => isAuthResponse(window.location));
  const [tab, setTab] = useState<Tab>(() => (location.hash === "#tools" ? "tools" : "callback"));
  const [prefs, setPrefsState] = useState<Prefs>(() => loadPrefs(localStorage, session?.sub ?? ""));
  const [services, setServices] = useState<string[]>([]);

  // a sign-in link opened in a tab already showing the console (same document: no reload)
  useEffect(() => {
    const onHash = () => {
      const taken = takeTokenFromLocation(window.location, window.history, sessionStorage);
      if (taken) {
        setSignInReason(null);
        setSession(taken);
      }
    };
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    fetch("/console/config.json")
      .then((r) => (r.ok ? (r.json() as Promise<ConsoleConfig>) : null))
      .catch(() => null)
      .then((c) => {
        if (!c?.sign_in) return setCompleting(false);
        setSignInMode(c.sign_in);
        setConfig(c);
        const issuer = issuerClaims(c);
        rememberIssuer(sessionStorage, issuer);
        // a token read before the config came: read again with the issuer's claim names
        setSession((s) => {
          const again = s && sessionFromToken(s.token, issuer);
          return again && JSON.stringify(again) !== JSON.stringify(s) ? again : s;
        });
        if (c.sign_in !== "oidc" || !isAuthResponse(window.location)) return setCompleting(false);
        completeSignIn(c, window.location, window.history, sessionStorage)
          .then((s) => {
            saveSession(sessionStorage, s);
            setSignInReason(null);
            setSession(s);
          })
          .catch((e: Error) => setSignInReason(e.message))
          .finally(() => setCompleting(false));
      });
  }, []);

  const api = useMemo(
    () =>
      makeApi(
        () => session?.token ?? null,
        () => {
          clearSession(sessionStorage);
          setSignInReason("Your sign-in was refused or has expired. Sign in again: what you were typing is kept.");
          setSession(null);
        },
      ),
    [session],
  );

  useEffect(() => {
    if (!session) return;
    setPrefsState(loadPrefs(localStorage, session.sub));
    api.GET("/api/v1/services").then(({ data }) => {
      const fromApi = (data?.items ?? []).map((s: ServiceView) => s.settings.name);
      const fromToken = session.services.filter((s) => s !== "*");
      setServices([...new Set([...fromToken, ...fromApi])].sort());
    });
  }, [session, api]);

  if (!session) {
    return (
      <SignIn
        mode={signInMode}
        config={config}
        completing={completing}
        reason={signInReason}
        onSignIn={(s) => {
          saveSession(sessionStorage, s);
          setSignInReason(null);
          setSession(s);
        }}
      />
    );
  }

  const ctx: Ctx = {
    session,
    api,
    prefs,
    setPrefs: (p) => {
      savePrefs(localStorage, session.sub, p);
      setPrefsState(p);
    },
    services,
    operator: can(session, "operate"),
  };
  const select = (t: Tab) => {
    setTab(t);
    history.replaceState(null, "", t === "tools" ? "#tools" : location.pathname);
  };

  return (
    <div class="shell">
      <header class="topbar">
        <span class="brand">Callback</span>
        <nav role="tablist" aria-label="Sections">
          <button role="tab" aria-selected={tab === "callback"} class="tab" onClick={() => select("callback")}>
            Callback
          </button>
          <button role="tab" aria-selected={tab === "tools"} class="tab" onClick={() => select("tools")}>
            Tools
          </button>
        </nav>
        <span class="user">
          <span data-testid="user">
            {session.sub} · {session.roles.map((r) => r.replace("callback_", "")).join(", ")}
          </span>
          <button
            class="link"
            onClick={() => {
              clearSession(sessionStorage);
              setSignInReason(null);
              setSession(null);
            }}
          >
            Sign out
          </button>
        </span>
      </header>
      <main>{tab === "callback" ? <CallbackTab ctx={ctx} /> : <Tools ctx={ctx} />}</main>
    </div>
  );
}
