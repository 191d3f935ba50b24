//! From a role and explicit grants to the effective [`Permissions`].

use amphi_protocol::{Permissions, Role, Source};
use serde::{Deserialize, Serialize};

/// The `grants` claim: explicit permissions, each overriding the role's
/// default when present.
///
/// Unknown fields are refused rather than ignored: a misspelt
/// `"publsh": false` silently ignored would leave the participant with *more*
/// rights than the portal meant to give.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_sources: Option<Vec<Source>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderate: Option<bool>,
}

/// What a role may do when the token has no explicit grants.
pub fn role_defaults(role: Role) -> Permissions {
    match role {
        Role::Teacher => Permissions {
            publish: true,
            subscribe: true,
            publish_sources: Source::ALL.to_vec(),
            chat: true,
            moderate: true,
        },
        Role::Student => Permissions {
            publish: true,
            subscribe: true,
            publish_sources: vec![Source::Camera, Source::Microphone],
            chat: true,
            moderate: false,
        },
        Role::Guest => Permissions {
            publish: false,
            subscribe: true,
            publish_sources: Vec::new(),
            chat: true,
            moderate: false,
        },
    }
}

/// The role's defaults with each present grant replacing its field.
///
/// Sources come out deduplicated in the canonical order of [`Source::ALL`],
/// and empty when `publish` ends up false, so that clients can trust
/// `publish_sources` alone.
pub fn effective_permissions(role: Role, grants: Option<&GrantClaims>) -> Permissions {
    let mut permissions = role_defaults(role);
    if let Some(grants) = grants {
        let GrantClaims {
            publish,
            subscribe,
            publish_sources,
            chat,
            moderate,
        } = grants;
        if let Some(publish) = publish {
            permissions.publish = *publish;
        }
        if let Some(subscribe) = subscribe {
            permissions.subscribe = *subscribe;
        }
        if let Some(sources) = publish_sources {
            permissions.publish_sources = sources.clone();
        }
        if let Some(chat) = chat {
            permissions.chat = *chat;
        }
        if let Some(moderate) = moderate {
            permissions.moderate = *moderate;
        }
    }
    permissions.publish_sources = if permissions.publish {
        Source::ALL
            .into_iter()
            .filter(|source| permissions.publish_sources.contains(source))
            .collect()
    } else {
        Vec::new()
    };
    permissions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_defaults_are_as_documented() {
        let teacher = effective_permissions(Role::Teacher, None);
        assert_eq!(
            teacher,
            Permissions {
                publish: true,
                subscribe: true,
                publish_sources: Source::ALL.to_vec(),
                chat: true,
                moderate: true
            }
        );
        let student = effective_permissions(Role::Student, None);
        assert_eq!(
            student,
            Permissions {
                publish: true,
                subscribe: true,
                publish_sources: vec![Source::Camera, Source::Microphone],
                chat: true,
                moderate: false
            }
        );
        let guest = effective_permissions(Role::Guest, None);
        assert_eq!(
            guest,
            Permissions {
                publish: false,
                subscribe: true,
                publish_sources: vec![],
                chat: true,
                moderate: false
            }
        );
        // Empty grants change nothing.
        for role in Role::ALL {
            assert_eq!(
                effective_permissions(role, Some(&GrantClaims::default())),
                role_defaults(role)
            );
        }
    }

    #[test]
    fn grants_override_field_by_field() {
        let grants = GrantClaims {
            publish_sources: Some(vec![Source::ScreenShare, Source::Camera, Source::Camera]),
            chat: Some(false),
            ..GrantClaims::default()
        };
        let p = effective_permissions(Role::Student, Some(&grants));
        assert!(p.publish && p.subscribe && !p.moderate);
        assert!(!p.chat);
        // Canonical order, no duplicates.
        assert_eq!(p.publish_sources, vec![Source::Camera, Source::ScreenShare]);

        let guest_speaker = GrantClaims {
            publish: Some(true),
            publish_sources: Some(vec![Source::Microphone]),
            ..GrantClaims::default()
        };
        let p = effective_permissions(Role::Guest, Some(&guest_speaker));
        assert!(p.publish);
        assert_eq!(p.publish_sources, vec![Source::Microphone]);

        let moderator = GrantClaims {
            moderate: Some(true),
            ..GrantClaims::default()
        };
        assert!(effective_permissions(Role::Student, Some(&moderator)).moderate);
    }

    #[test]
    fn no_publish_means_no_sources() {
        let grants = GrantClaims {
            publish: Some(false),
            publish_sources: Some(vec![Source::Camera]),
            ..GrantClaims::default()
        };
        let p = effective_permissions(Role::Teacher, Some(&grants));
        assert!(!p.publish);
        assert!(p.publish_sources.is_empty());
        assert!(p.moderate, "other fields keep the role's defaults");
    }

    #[test]
    fn unknown_grant_fields_are_refused() {
        let err = serde_json::from_str::<GrantClaims>(r#"{"publsh":false}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err =
            serde_json::from_str::<GrantClaims>(r#"{"publish_sources":["screen"]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
