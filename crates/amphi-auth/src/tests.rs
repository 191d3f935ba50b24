//! Tests of minting and verifying whole tokens: one per rejection in
//! `docs/tokens.md`, and tokens minted by other JWT libraries as documented.

use std::time::Duration;

use amphi_protocol::{ErrorCode, Role, Source};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::*;

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "portal-secret-0123456789abcdef0123456789";
const OTHER_SECRET: &str = "another-secret-0123456789abcdef012345678";
const ROOM: &str = "physics-101";

fn keys() -> KeySet {
    let mut keys = KeySet::new(Duration::from_secs(4 * 3600));
    keys.insert("portal", SECRET).unwrap();
    keys
}

fn claims() -> Claims {
    Claims::new(ROOM, "alice@uni.example", Duration::from_secs(3600), NOW)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with exactly this header and payload, signed HS256 with `secret`,
/// for shapes that `mint` (rightly) refuses to produce.
fn raw_token(header: &Value, payload: &Value, secret: &str) -> String {
    raw_token_text(&header.to_string(), &payload.to_string(), secret)
}

fn raw_token_text(header: &str, payload: &str, secret: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

fn portal_header() -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": "portal"})
}

fn payload() -> Value {
    serde_json::to_value(claims()).unwrap()
}

fn payload_with(field: &str, value: Value) -> Value {
    let mut payload = payload();
    payload[field] = value;
    payload
}

fn payload_without(field: &str) -> Value {
    let mut payload = payload();
    payload.as_object_mut().unwrap().remove(field);
    payload
}

/// Verifies a token for ROOM at NOW with [`keys`].
fn verify(token: &str) -> Result<VerifiedToken, TokenError> {
    keys().verify(token, Some(ROOM), NOW)
}

fn verify_payload(payload: &Value) -> Result<VerifiedToken, TokenError> {
    verify(&raw_token(&portal_header(), payload, SECRET))
}

// ---- accepted tokens ----

#[test]
fn round_trip_mint_verify() {
    let keys = keys();
    let claims = claims().with_name("Alice Martin").with_role(Role::Teacher);
    let token = keys.mint(None, &claims).unwrap();
    let verified = keys.verify(&token, Some(ROOM), NOW).unwrap();
    assert_eq!(
        verified,
        VerifiedToken {
            identity: "alice@uni.example".into(),
            room: ROOM.into(),
            name: "Alice Martin".into(),
            role: Role::Teacher,
            permissions: role_defaults(Role::Teacher),
            expires_at: NOW + 3600,
            kid: "portal".into(),
        }
    );
    // Without an expected room, any room is fine.
    assert!(keys.verify(&token, None, NOW).is_ok());
}

#[test]
fn minted_header_is_standard() {
    let token = keys().mint(Some("portal"), &claims()).unwrap();
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"typ": "JWT", "alg": "HS256", "kid": "portal"})
    );
}

#[test]
fn mint_chooses_the_key() {
    let mut keys = keys();
    keys.insert("backup", OTHER_SECRET).unwrap();
    let first = keys.mint(None, &claims()).unwrap();
    assert_eq!(keys.verify(&first, None, NOW).unwrap().kid, "portal");
    let second = keys.mint(Some("backup"), &claims()).unwrap();
    assert_eq!(keys.verify(&second, None, NOW).unwrap().kid, "backup");
}

#[test]
fn token_without_role_is_a_student() {
    let verified = verify(&keys().mint(None, &claims()).unwrap()).unwrap();
    assert_eq!(verified.role, Role::Student);
    assert_eq!(verified.permissions, role_defaults(Role::Student));
    assert_eq!(
        verified.name, "alice@uni.example",
        "name defaults to identity"
    );
}

#[test]
fn role_defaults_through_tokens() {
    for role in Role::ALL {
        let token = keys().mint(None, &claims().with_role(role)).unwrap();
        let verified = verify(&token).unwrap();
        assert_eq!(verified.role, role);
        assert_eq!(verified.permissions, role_defaults(role));
    }
    let guest = role_defaults(Role::Guest);
    assert!(!guest.publish && guest.subscribe && guest.chat && !guest.moderate);
    assert!(guest.publish_sources.is_empty());
}

#[test]
fn grants_override_role_defaults() {
    let payload = payload_with(
        "grants",
        json!({"publish": true, "publish_sources": ["microphone"], "chat": false}),
    );
    let payload = {
        let mut p = payload;
        p["role"] = json!("guest");
        p
    };
    let verified = verify_payload(&payload).unwrap();
    assert_eq!(verified.role, Role::Guest);
    assert!(verified.permissions.publish);
    assert!(verified.permissions.subscribe, "kept from the role");
    assert_eq!(
        verified.permissions.publish_sources,
        vec![Source::Microphone]
    );
    assert!(!verified.permissions.chat);

    let verified = verify_payload(&payload_with("grants", json!({"publish": false}))).unwrap();
    assert!(!verified.permissions.publish);
    assert!(verified.permissions.publish_sources.is_empty());
}

#[test]
fn unknown_claims_and_nulls_are_ignored() {
    let mut payload = payload();
    payload["iss"] = json!("https://portal.uni.example");
    payload["aud"] = json!("amphi");
    payload["jti"] = json!("8a7b");
    payload["name"] = Value::Null;
    payload["nbf"] = Value::Null;
    assert!(verify_payload(&payload).is_ok());
}

#[test]
fn fractional_times_are_rounded_down() {
    let payload = payload_with("exp", json!(NOW as f64 + 10.75));
    assert_eq!(verify_payload(&payload).unwrap().expires_at, NOW + 10);
}

#[test]
fn dev_key_set_round_trip() {
    let keys = KeySet::dev();
    let token = keys
        .mint(Some(DEV_KID), &Claims::new(ROOM, "dev", DEV_MAX_TTL, NOW))
        .unwrap();
    assert_eq!(keys.verify(&token, Some(ROOM), NOW).unwrap().kid, "devkey");
}

/// The example token printed in docs/tokens.md, minted with the dev key at
/// iat 1767261600 (2026-01-01T10:00:00Z) for two hours.
const DOC_EXAMPLE_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiIsImtpZCI6ImRldmtleSJ9.eyJzdWIiOiJhbGljZUB1bmkuZXhhbXBsZSIsInJvb20iOiJwaHlzaWNzLTEwMSIsImV4cCI6MTc2NzI2ODgwMCwibmFtZSI6IkFsaWNlIE1hcnRpbiIsImlhdCI6MTc2NzI2MTYwMCwicm9sZSI6InRlYWNoZXIifQ.MYNUzqAq9N1wNUzGVOPtM6dUIr_Xw9kY3evzhU7BYUw";

#[test]
fn documented_example_token_verifies() {
    let docs = include_str!("../../../docs/tokens.md");
    assert!(docs.contains(DOC_EXAMPLE_TOKEN), "docs/tokens.md changed");
    assert!(
        docs.contains(DEV_SECRET),
        "docs/tokens.md must publish the dev secret"
    );
    let verified = KeySet::dev()
        .verify(DOC_EXAMPLE_TOKEN, Some(ROOM), 1_767_261_600 + 60)
        .unwrap();
    assert_eq!(verified.identity, "alice@uni.example");
    assert_eq!(verified.name, "Alice Martin");
    assert_eq!(verified.role, Role::Teacher);
    assert_eq!(verified.expires_at, 1_767_268_800);
    // Minting the same claims gives the same token: the example is reproducible.
    let claims = Claims::new(
        ROOM,
        "alice@uni.example",
        Duration::from_secs(7200),
        1_767_261_600,
    )
    .with_name("Alice Martin")
    .with_role(Role::Teacher);
    assert_eq!(
        KeySet::dev().mint(None, &claims).unwrap(),
        DOC_EXAMPLE_TOKEN
    );
}

/// Printed by the Python example of docs/tokens.md, run as written with PyJWT
/// 2.15, `AMPHI_SECRET` set to [`SECRET`] and `time.time` patched to return
/// 1767261600 (2026-01-01T10:00:00Z).
const PYJWT_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6InBvcnRhbCIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZUB1bmkuZXhhbXBsZSIsInJvb20iOiJwaHlzaWNzLTEwMSIsIm5hbWUiOiJBbGljZSBNYXJ0aW4iLCJyb2xlIjoic3R1ZGVudCIsImlhdCI6MTc2NzI2MTYwMCwiZXhwIjoxNzY3MjY4ODAwLCJncmFudHMiOnsicHVibGlzaF9zb3VyY2VzIjpbImNhbWVyYSIsIm1pY3JvcGhvbmUiLCJzY3JlZW5fc2hhcmUiXX19.87XKG94IeRWBh2L_rMfPNyoF2uY6PxTFgTQjDEFaYI4";

/// Printed by the Node example of docs/tokens.md, run as written with the npm
/// `jsonwebtoken` package 9.0, the same secret and `Date.now` patched to the
/// same time.
const NODE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InBvcnRhbCJ9.eyJzdWIiOiJhbGljZUB1bmkuZXhhbXBsZSIsInJvb20iOiJwaHlzaWNzLTEwMSIsIm5hbWUiOiJBbGljZSBNYXJ0aW4iLCJyb2xlIjoic3R1ZGVudCIsImdyYW50cyI6eyJwdWJsaXNoX3NvdXJjZXMiOlsiY2FtZXJhIiwibWljcm9waG9uZSIsInNjcmVlbl9zaGFyZSJdfSwiaWF0IjoxNzY3MjYxNjAwLCJleHAiOjE3NjcyNjg4MDB9.1DL1TgWsGh9KDevBEeAaIkLU0KYf8r7BBFnqDoSuRyQ";

#[test]
fn tokens_from_other_libraries_verify() {
    let now = 1_767_261_600 + 5;
    for (library, token) in [("PyJWT", PYJWT_TOKEN), ("node jsonwebtoken", NODE_TOKEN)] {
        let verified = keys()
            .verify(token, Some(ROOM), now)
            .unwrap_or_else(|err| panic!("{library}: {err}"));
        assert_eq!(verified.identity, "alice@uni.example", "{library}");
        assert_eq!(verified.name, "Alice Martin", "{library}");
        assert_eq!(verified.role, Role::Student, "{library}");
        assert_eq!(
            verified.permissions.publish_sources,
            vec![Source::Camera, Source::Microphone, Source::ScreenShare],
            "{library}"
        );
        assert_eq!(verified.expires_at, 1_767_261_600 + 7200, "{library}");
    }
}

// ---- one test per rejection ----

#[test]
fn rejects_oversized_token_before_decoding() {
    // Not even a JWT: the size alone decides.
    let token = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        verify(&token),
        Err(TokenError::TooLarge {
            len: MAX_TOKEN_BYTES + 1
        })
    );
    // A genuine, correctly signed token is refused too once over the limit.
    let padded = payload_with("pad", json!("x".repeat(MAX_TOKEN_BYTES)));
    assert!(matches!(
        verify_payload(&padded),
        Err(TokenError::TooLarge { .. })
    ));
}

#[test]
fn rejects_alg_none() {
    let payload = b64(payload().to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "portal"}).to_string();
        for signature in ["", "AAAA"] {
            let token = format!("{}.{payload}.{signature}", b64(header.as_bytes()));
            assert_eq!(verify(&token), Err(TokenError::AlgorithmNone), "{alg}");
        }
    }
}

#[test]
fn rejects_other_hmac_algorithms() {
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let mut header = Header::new(alg);
        header.kid = Some("portal".into());
        // Correctly signed with the right secret: only the algorithm is wrong.
        let token = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify(&token),
            Err(TokenError::UnsupportedAlgorithm {
                alg: format!("{alg:?}")
            })
        );
    }
}

#[test]
fn rejects_asymmetric_algorithm_header() {
    // The classic confusion attack: an RS256 header, "signed" with the HMAC
    // secret or anything else, must not reach any verifier.
    for alg in ["RS256", "ES256", "EdDSA", "hs256", "HS999"] {
        let header = json!({"alg": alg, "kid": "portal"});
        let token = raw_token(&header, &payload(), SECRET);
        assert_eq!(
            verify(&token),
            Err(TokenError::UnsupportedAlgorithm { alg: alg.into() })
        );
    }
    let long = json!({"alg": "X".repeat(100), "kid": "portal"});
    let Err(TokenError::UnsupportedAlgorithm { alg }) =
        verify(&raw_token(&long, &payload(), SECRET))
    else {
        panic!("expected UnsupportedAlgorithm");
    };
    assert_eq!(alg.chars().count(), 17, "quoted shortened: {alg}");
}

#[test]
fn rejects_unknown_kid() {
    let mut other = KeySet::new(Duration::from_secs(3600));
    other.insert("elsewhere", SECRET).unwrap();
    let token = other.mint(None, &claims()).unwrap();
    assert_eq!(
        verify(&token),
        Err(TokenError::UnknownKid {
            kid: "elsewhere".into()
        })
    );
}

#[test]
fn rejects_missing_kid() {
    let token = raw_token(&json!({"alg": "HS256", "typ": "JWT"}), &payload(), SECRET);
    assert_eq!(verify(&token), Err(TokenError::MissingKid));
    let token = raw_token(&json!({"alg": "HS256", "kid": ""}), &payload(), SECRET);
    assert_eq!(verify(&token), Err(TokenError::MissingKid));
    let token = raw_token(&json!({"alg": "HS256", "kid": null}), &payload(), SECRET);
    assert_eq!(verify(&token), Err(TokenError::MissingKid));
}

#[test]
fn rejects_forged_signature() {
    // Same kid, another secret.
    let forged = raw_token(&portal_header(), &payload(), OTHER_SECRET);
    assert_eq!(verify(&forged), Err(TokenError::BadSignature));

    // A genuine token with its payload swapped for a more generous one.
    let genuine = keys().mint(None, &claims()).unwrap();
    let [header, _, signature]: [&str; 3] =
        genuine.split('.').collect::<Vec<_>>().try_into().unwrap();
    let teacher = b64(payload_with("role", json!("teacher"))
        .to_string()
        .as_bytes());
    let tampered = format!("{header}.{teacher}.{signature}");
    assert_eq!(verify(&tampered), Err(TokenError::BadSignature));

    // No signature at all.
    let stripped = format!("{header}.{teacher}.");
    assert_eq!(verify(&stripped), Err(TokenError::BadSignature));
}

#[test]
fn forged_token_learns_nothing_about_claims() {
    // Claims that would each be refused are not even looked at when the
    // signature is wrong: the answer is the same for all of them.
    for payload in [
        json!({}),
        json!([1, 2]),
        payload_with("exp", json!(1)),
        payload_with("room", json!("other")),
        payload_without("sub"),
    ] {
        let forged = raw_token(&portal_header(), &payload, OTHER_SECRET);
        assert_eq!(verify(&forged), Err(TokenError::BadSignature));
    }
    let forged_garbage = format!(
        "{}.{}.{}",
        b64(portal_header().to_string().as_bytes()),
        "%%%not-base64%%%",
        b64(b"sig")
    );
    assert_eq!(verify(&forged_garbage), Err(TokenError::BadSignature));
}

#[test]
fn rejects_malformed_tokens() {
    let genuine = keys().mint(None, &claims()).unwrap();
    let [header, payload, signature]: [&str; 3] =
        genuine.split('.').collect::<Vec<_>>().try_into().unwrap();
    let malformed = |token: &str| match verify(token) {
        Err(TokenError::Malformed(reason)) => reason,
        other => panic!("{token:?}: expected Malformed, got {other:?}"),
    };

    for token in [
        String::new(),
        "abc".into(),
        format!("{header}.{payload}"),
        format!("{genuine}.extra"),
    ] {
        assert_eq!(malformed(&token), Malformed::NotThreeParts, "{token}");
    }
    assert_eq!(
        malformed(&format!("{header}=.{payload}.{signature}")),
        Malformed::HeaderEncoding
    );
    assert_eq!(
        malformed(&format!("!!!.{payload}.{signature}")),
        Malformed::HeaderEncoding
    );
    for bad_header in ["not json", "[]", r#"{"kid":"portal"}"#, r#"{"alg":256}"#] {
        let token = format!("{}.{payload}.{signature}", b64(bad_header.as_bytes()));
        assert_eq!(malformed(&token), Malformed::HeaderJson, "{bad_header}");
    }
    let crit = json!({"alg": "HS256", "kid": "portal", "crit": ["exp"]});
    assert_eq!(
        malformed(&raw_token(&crit, &payload_with("sub", json!("x")), SECRET)),
        Malformed::CriticalHeader
    );
    assert_eq!(
        malformed(&format!("{header}.{payload}.not*base64")),
        Malformed::SignatureEncoding
    );
    // Bad payloads correctly signed (so by a key holder with a broken library).
    let signed_payload = |payload_text: &str| {
        let input = format!("{header}.{payload_text}");
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{sig}")
    };
    assert_eq!(
        malformed(&signed_payload("%%%")),
        Malformed::PayloadEncoding
    );
    for bad_json in ["not json", "[]", "42", r#"{"sub":"#] {
        assert_eq!(
            malformed(&signed_payload(&b64(bad_json.as_bytes()))),
            Malformed::PayloadJson,
            "{bad_json}"
        );
    }
}

#[test]
fn rejects_missing_required_claims() {
    for claim in ["exp", "sub", "room"] {
        assert_eq!(
            verify_payload(&payload_without(claim)),
            Err(TokenError::MissingClaim { claim }),
            "{claim}"
        );
        assert_eq!(
            verify_payload(&payload_with(claim, Value::Null)),
            Err(TokenError::MissingClaim { claim }),
            "{claim} null"
        );
    }
}

#[test]
fn rejects_claims_of_the_wrong_type() {
    for (claim, value) in [
        ("sub", json!(42)),
        ("room", json!(["physics-101"])),
        ("exp", json!("1700003600")),
        ("exp", json!(-5)),
        ("nbf", json!(true)),
        ("iat", json!({})),
        ("name", json!(7)),
        ("role", json!("admin")),
        ("grants", json!({"publsh": false})),
        ("grants", json!({"publish_sources": ["screen"]})),
        ("grants", json!(true)),
    ] {
        let result = verify_payload(&payload_with(claim, value.clone()));
        assert!(
            matches!(&result, Err(TokenError::InvalidClaim { claim: c, .. }) if *c == claim),
            "{claim}={value}: {result:?}"
        );
    }
    let err = verify_payload(&payload_with("role", json!("admin"))).unwrap_err();
    assert!(err.to_string().contains("teacher"), "{err}");
}

#[test]
fn rejects_expired_token_without_leeway() {
    let at = |exp: u64| {
        let mut payload = payload_with("exp", json!(exp));
        payload["iat"] = json!(exp - 3600);
        verify_payload(&payload)
    };
    assert!(at(NOW + 1).is_ok());
    assert_eq!(
        at(NOW),
        Err(TokenError::Expired {
            exp: NOW,
            ago_secs: 0
        })
    );
    let err = at(NOW - 90).unwrap_err();
    assert_eq!(
        err,
        TokenError::Expired {
            exp: NOW - 90,
            ago_secs: 90
        }
    );
    assert_eq!(err.to_string(), "the token expired 1m 30s ago");
}

#[test]
fn rejects_token_not_yet_valid_beyond_leeway() {
    let at = |nbf: u64| verify_payload(&payload_with("nbf", json!(nbf)));
    assert!(at(NOW).is_ok());
    assert!(at(NOW + NBF_LEEWAY_SECS).is_ok(), "within the leeway");
    assert_eq!(
        at(NOW + NBF_LEEWAY_SECS + 1),
        Err(TokenError::NotYetValid {
            nbf: NOW + 31,
            in_secs: 31
        })
    );
}

#[test]
fn rejects_lifetime_over_the_maximum() {
    let max = keys().max_ttl().as_secs();
    // exp - now over the maximum (no iat).
    let mut no_iat = payload_without("iat");
    no_iat["exp"] = json!(NOW + max);
    assert!(verify_payload(&no_iat).is_ok());
    no_iat["exp"] = json!(NOW + max + 1);
    assert_eq!(
        verify_payload(&no_iat),
        Err(TokenError::TooLongLived {
            lifetime_secs: max + 1,
            max_secs: max
        })
    );
    // exp - iat over the maximum even though little of it is left.
    let mut payload = payload();
    payload["iat"] = json!(NOW - max);
    payload["exp"] = json!(NOW + 10);
    assert_eq!(
        verify_payload(&payload),
        Err(TokenError::TooLongLived {
            lifetime_secs: max + 10,
            max_secs: max
        })
    );
    let err = verify_payload(&payload).unwrap_err().to_string();
    assert_eq!(
        err,
        "the token's lifetime of 4h 10s is longer than this server's maximum of 4h"
    );
}

#[test]
fn rejects_token_for_another_room() {
    let token = keys().mint(None, &claims()).unwrap();
    assert_eq!(
        keys().verify(&token, Some("chemistry-201"), NOW),
        Err(TokenError::WrongRoom {
            token_room: ROOM.into(),
            expected: "chemistry-201".into()
        })
    );
    // Rooms are case-sensitive.
    assert!(matches!(
        keys().verify(&token, Some("Physics-101"), NOW),
        Err(TokenError::WrongRoom { .. })
    ));
}

#[test]
fn rejects_empty_identity_and_room() {
    assert_eq!(
        verify_payload(&payload_with("sub", json!(""))),
        Err(TokenError::Claims(ClaimError::EmptyIdentity))
    );
    assert_eq!(
        verify_payload(&payload_with("room", json!(""))),
        Err(TokenError::Claims(ClaimError::EmptyRoom))
    );
}

#[test]
fn rejects_over_long_identity_room_and_name() {
    let sub = "é".repeat(MAX_IDENTITY_CHARS);
    assert!(verify_payload(&payload_with("sub", json!(sub))).is_ok());
    assert_eq!(
        verify_payload(&payload_with("sub", json!(sub + "x"))),
        Err(TokenError::Claims(ClaimError::IdentityTooLong {
            len: MAX_IDENTITY_CHARS + 1
        }))
    );
    let name = "n".repeat(MAX_NAME_CHARS + 1);
    assert_eq!(
        verify_payload(&payload_with("name", json!(name))),
        Err(TokenError::Claims(ClaimError::NameTooLong {
            len: MAX_NAME_CHARS + 1
        }))
    );
    let room = "r".repeat(MAX_ROOM_CHARS + 1);
    assert_eq!(
        keys().verify(
            &raw_token(&portal_header(), &payload_with("room", json!(room)), SECRET),
            None,
            NOW
        ),
        Err(TokenError::Claims(ClaimError::RoomTooLong {
            len: MAX_ROOM_CHARS + 1
        }))
    );
}

#[test]
fn rejects_invalid_room_names_and_control_characters() {
    for room in ["physics 101", "../admin", ".", "a/b", "ü"] {
        let token = raw_token(&portal_header(), &payload_with("room", json!(room)), SECRET);
        assert!(
            matches!(
                keys().verify(&token, None, NOW),
                Err(TokenError::Claims(ClaimError::InvalidRoom { .. }))
            ),
            "{room}"
        );
    }
    assert_eq!(
        verify_payload(&payload_with("sub", json!("alice\nadmin"))),
        Err(TokenError::Claims(ClaimError::IdentityControlChars))
    );
    assert_eq!(
        verify_payload(&payload_with("name", json!("Alice\u{1b}[31m"))),
        Err(TokenError::Claims(ClaimError::NameControlChars))
    );
}

#[test]
fn rejects_token_that_is_never_valid() {
    let mut payload = payload();
    payload["iat"] = json!(NOW + 10);
    payload["exp"] = json!(NOW + 5);
    assert_eq!(
        verify_payload(&payload),
        Err(TokenError::Claims(ClaimError::EmptyLifetime))
    );
}

// ---- error messages ----

#[test]
fn errors_are_unauthorized_and_never_quote_the_token_or_secret() {
    let genuine = keys().mint(None, &claims()).unwrap();
    let [header, payload_b64, signature]: [&str; 3] =
        genuine.split('.').collect::<Vec<_>>().try_into().unwrap();
    let tokens = [
        "x".repeat(MAX_TOKEN_BYTES + 1),
        format!("{header}.{payload_b64}"),
        format!("{header}.{payload_b64}.{signature}x"),
        format!("{header}.{payload_b64}.*{signature}"),
        raw_token(&json!({"alg": "none", "kid": "portal"}), &payload(), SECRET),
        raw_token(
            &json!({"alg": "RS256", "kid": "portal"}),
            &payload(),
            SECRET,
        ),
        raw_token(&json!({"alg": "HS256"}), &payload(), SECRET),
        raw_token(&json!({"alg": "HS256", "kid": "x"}), &payload(), SECRET),
        raw_token(&portal_header(), &payload(), OTHER_SECRET),
        raw_token(&portal_header(), &payload_without("sub"), SECRET),
        raw_token(&portal_header(), &payload_with("role", json!(1)), SECRET),
        raw_token(&portal_header(), &payload_with("sub", json!("")), SECRET),
        raw_token(
            &portal_header(),
            &json!({"sub": "a", "room": ROOM, "exp": NOW}),
            SECRET,
        ),
        raw_token(
            &portal_header(),
            &payload_with("nbf", json!(NOW + 99)),
            SECRET,
        ),
        raw_token(
            &portal_header(),
            &payload_with("exp", json!(NOW + 99999)),
            SECRET,
        ),
        raw_token(&portal_header(), &payload_with("room", json!("x")), SECRET),
    ];
    let mut seen = std::collections::HashSet::new();
    for token in &tokens {
        let err = verify(token).unwrap_err();
        let message = err.to_string();
        assert!(!err.is_forbidden());
        assert_eq!(err.code(), ErrorCode::Unauthorized);
        assert!(
            !message.is_empty() && message.starts_with("the token"),
            "{message}"
        );
        for part in token.split('.').filter(|part| part.len() > 8) {
            assert!(!message.contains(part), "{message}");
        }
        assert!(!message.contains(SECRET) && !message.contains(OTHER_SECRET));
        assert!(!message.contains("alice"), "identity quoted: {message}");
        seen.insert(std::mem::discriminant(&err));
    }
    // Two malformed tokens and two bad signatures; every other case has its own variant.
    assert_eq!(seen.len(), tokens.len() - 2);
}

#[test]
fn wrong_room_message_shortens_what_the_client_sent() {
    let token = keys().mint(None, &claims()).unwrap();
    let err = keys()
        .verify(&token, Some(&"z".repeat(10_000)), NOW)
        .unwrap_err()
        .to_string();
    assert!(err.len() < 200, "{err}");
}

// ---- minting ----

#[test]
fn mint_refuses_what_verify_would_refuse() {
    let keys = keys();
    assert!(matches!(
        KeySet::new(Duration::from_secs(60)).mint(None, &claims()),
        Err(MintError::NoKeys)
    ));
    assert!(matches!(
        keys.mint(Some("nope"), &claims()),
        Err(MintError::UnknownKid { .. })
    ));
    let long = Claims::new(ROOM, "alice", Duration::from_secs(4 * 3600 + 1), NOW);
    assert!(matches!(
        keys.mint(None, &long),
        Err(MintError::TooLongLived {
            lifetime_secs: 14401,
            max_secs: 14400
        })
    ));
    let bad_room = Claims::new("physics 101", "alice", Duration::from_secs(60), NOW);
    assert!(matches!(
        keys.mint(None, &bad_room),
        Err(MintError::Claims(ClaimError::InvalidRoom { .. }))
    ));
    let empty = Claims::new(ROOM, "", Duration::from_secs(60), NOW);
    assert!(matches!(
        keys.mint(None, &empty),
        Err(MintError::Claims(ClaimError::EmptyIdentity))
    ));
    let huge = claims().with_grants(GrantClaims {
        publish_sources: Some(vec![Source::Camera; 1000]),
        ..GrantClaims::default()
    });
    assert!(matches!(
        keys.mint(None, &huge),
        Err(MintError::TooLarge { .. })
    ));
}

#[test]
fn documented_messages_are_exact() {
    let docs = include_str!("../../../docs/tokens.md");
    let errors = [
        TokenError::TooLarge { len: 5000 },
        Malformed::NotThreeParts.into(),
        Malformed::HeaderEncoding.into(),
        Malformed::HeaderJson.into(),
        Malformed::CriticalHeader.into(),
        Malformed::SignatureEncoding.into(),
        Malformed::PayloadEncoding.into(),
        Malformed::PayloadJson.into(),
        TokenError::AlgorithmNone,
        TokenError::UnsupportedAlgorithm {
            alg: "RS256".into(),
        },
        TokenError::MissingKid,
        TokenError::UnknownKid {
            kid: "portal".into(),
        },
        TokenError::BadSignature,
        TokenError::MissingClaim { claim: "sub" },
        verify_payload(&payload_with("exp", json!("x"))).unwrap_err(),
        verify_payload(&payload_with("sub", json!(1))).unwrap_err(),
        verify_payload(&payload_with("role", json!("admin"))).unwrap_err(),
        verify_payload(&payload_with("grants", json!({"publsh": true}))).unwrap_err(),
        ClaimError::EmptyIdentity.into(),
        ClaimError::IdentityTooLong { len: 300 }.into(),
        ClaimError::IdentityControlChars.into(),
        ClaimError::EmptyRoom.into(),
        ClaimError::RoomTooLong { len: 70 }.into(),
        ClaimError::InvalidRoom {
            room: "physics 101".into(),
        }
        .into(),
        ClaimError::NameTooLong { len: 300 }.into(),
        ClaimError::NameControlChars.into(),
        ClaimError::EmptyLifetime.into(),
        TokenError::Expired {
            exp: 0,
            ago_secs: 3725,
        },
        TokenError::NotYetValid {
            nbf: 0,
            in_secs: 95,
        },
        TokenError::TooLongLived {
            lifetime_secs: 7 * 86400,
            max_secs: 86400,
        },
        TokenError::WrongRoom {
            token_room: "physics-101".into(),
            expected: "chemistry-201".into(),
        },
    ];
    for err in errors {
        let message = err.to_string();
        assert!(docs.contains(&message), "not in docs/tokens.md: {message}");
    }
}
