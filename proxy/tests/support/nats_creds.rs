//! NATS's decentralised authentication, set up the way `nsc` sets it up (nsc is not packaged for Debian):
//! an operator, a system account, an account with JetStream and a user in it, each an nkey; their JWTs
//! signed as nsc signs them (`ed25519-nkey`); the server's config trusting the operator with the accounts
//! preloaded; and the user's `.creds` file as `nsc generate creds` writes it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use nkeys::KeyPair;
use serde_json::{json, Value};

pub struct Decentralized {
    /// The server's config (operator, system account, resolver with the accounts).
    pub server_config: String,
    /// The user's credentials file.
    pub creds: String,
}

fn encoded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT about `subject`, issued (signed) by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let header = encoded(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let issued_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "jti": format!("{name}{issued_at}"),
        "iat": issued_at,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", encoded(claims.to_string().as_bytes()));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", encoded(&signature))
}

fn account(operator: &KeyPair, account: &KeyPair, name: &str, jetstream: bool) -> String {
    let mut limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
    });
    if jetstream {
        for key in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[key] = json!(-1);
        }
    }
    jwt(
        operator,
        &account.public_key(),
        name,
        json!({
            "limits": limits,
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2,
        }),
    )
}

impl Decentralized {
    pub fn new() -> Decentralized {
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let capture = KeyPair::new_account();
        let user = KeyPair::new_user();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "test-operator",
            json!({"type": "operator", "version": 2}),
        );
        let user_jwt = jwt(
            &capture,
            &user.public_key(),
            "sidecar",
            json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        let server_config = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {system}\nresolver: MEMORY\nresolver_preload: {{\n  {system}: \"{system_jwt}\"\n  {capture}: \"{capture_jwt}\"\n}}\n",
            system = system.public_key(),
            system_jwt = account(&operator, &system, "SYS", false),
            capture = capture.public_key(),
            capture_jwt = account(&operator, &capture, "CAPTURE", true),
        );
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            seed = user.seed().unwrap(),
        );
        Decentralized {
            server_config,
            creds,
        }
    }
}
