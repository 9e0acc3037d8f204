//! How a push authenticates to a registry: anonymously, with HTTP basic
//! authentication, or with a bearer token, the scheme of Docker Hub, GHCR, GCR,
//! Harbor and the distribution registry with `auth: token`.
//!
//! The bearer-token flow starts with a refusal. The registry answers `401` with a
//! challenge such as
//!
//! ```text
//! WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push"
//! ```
//!
//! and the client asks the *realm* (a token server, often another host) for a token:
//! `GET REALM?service=SERVICE&scope=repository:REPO:pull,push`, with the user and
//! password as basic authentication when it has them. The answer is JSON whose
//! `token` (or `access_token`) is then sent to the registry as
//! `Authorization: Bearer TOKEN`, for the request that was refused and for every
//! later one of the push, until the registry refuses it again (it expired), when a
//! fresh one is fetched once more.
//!
//! Where the credentials come from (the environment):
//!
//! - `RIFFLE_REGISTRY_TOKEN`: a token sent as it is (`Authorization: Bearer`), such
//!   as a personal access token a registry accepts directly; no token server is
//!   asked, and a registry that refuses it is an error;
//! - `RIFFLE_REGISTRY_USER` and `RIFFLE_REGISTRY_PASSWORD`: sent as basic
//!   authentication to the registry, and to the token server when the registry
//!   asks for a bearer token;
//! - neither: anonymous requests, and anonymous token requests.
//!
//! The challenge is read by [`parse_challenges`], which knows quoted values with
//! commas and escapes, several challenges in one header and `token68` credentials.

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::WWW_AUTHENTICATE;

use super::ImageError;

/// One challenge of a `WWW-Authenticate` header: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `Bearer`, `Basic`, ... as the server wrote it.
    pub scheme: String,
    /// The `name=value` parameters in order, names as written, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of the parameter `name` (compared without case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this challenge's scheme is `scheme` (compared without case).
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// Reads the challenges of a `WWW-Authenticate` header value (RFC 9110 section 11):
/// schemes, each followed by `name=value` parameters (values bare or quoted, with
/// `\` escapes) or by one `token68`, all separated by commas.
///
/// ```
/// use riffle_project::image::auth::parse_challenges;
///
/// let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push""#;
/// let challenges = parse_challenges(header).unwrap();
/// assert_eq!(challenges.len(), 1);
/// assert!(challenges[0].is("bearer"));
/// assert_eq!(challenges[0].param("realm"), Some("https://auth.example/token"));
/// assert_eq!(challenges[0].param("scope"), Some("repository:team/app:pull,push"));
/// assert!(parse_challenges(r#"Bearer realm="never closed"#).is_err());
/// ```
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, String> {
    let mut cursor = Cursor {
        text: header,
        at: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip(|c| c == b',' || c.is_ascii_whitespace());
        if cursor.done() {
            return Ok(challenges);
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            return Err(cursor.unexpected("an authentication scheme"));
        }
        let mut challenge = Challenge {
            scheme: scheme.to_string(),
            params: Vec::new(),
        };
        // Right after the scheme (before any comma) a token68 may stand alone.
        let mut after_comma = false;
        let mut token68 = false;
        loop {
            cursor.skip(|c| c.is_ascii_whitespace());
            if cursor.done() {
                break;
            }
            if cursor.peek() == Some(b',') {
                cursor.at += 1;
                after_comma = true;
                continue;
            }
            let start = cursor.at;
            let name = cursor.token();
            if name.is_empty() {
                return Err(cursor.unexpected("a parameter name"));
            }
            cursor.skip(|c| c.is_ascii_whitespace());
            let is_param = cursor.peek() == Some(b'=')
                && !matches!(cursor.peek_at(1), None | Some(b'=' | b','));
            if is_param {
                cursor.at += 1;
                cursor.skip(|c| c.is_ascii_whitespace());
                let value = if cursor.peek() == Some(b'"') {
                    cursor.quoted()?
                } else {
                    let value = cursor.token();
                    if value.is_empty() {
                        return Err(cursor.unexpected(&format!("a value for {name:?}")));
                    }
                    value.to_string()
                };
                challenge.params.push((name.to_string(), value));
                cursor.skip(|c| c.is_ascii_whitespace());
                if !cursor.done() && cursor.peek() != Some(b',') {
                    return Err(cursor.unexpected("a comma"));
                }
            } else if challenge.params.is_empty() && !after_comma && !token68 {
                // `Negotiate abc==`: the token68 and its padding.
                cursor.skip(|c| c == b'=');
                token68 = true;
            } else {
                // A bare word after the parameters: the next challenge's scheme.
                cursor.at = start;
                break;
            }
        }
        challenges.push(challenge);
    }
}

/// A position in a header value; the syntax is ASCII, values may be any UTF-8.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.at + ahead).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.at += 1;
        }
    }

    /// A run of characters that are not white space, `,`, `=` or `"`.
    fn token(&mut self) -> &'a str {
        let start = self.at;
        self.skip(|c| !(c.is_ascii_whitespace() || matches!(c, b',' | b'=' | b'"')));
        &self.text[start..self.at]
    }

    /// A quoted string at the cursor, unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        let opened = self.at;
        self.at += 1;
        let mut value = String::new();
        let mut chars = self.text[self.at..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err(format!(
            "the quoted value at byte {opened} of {:?} is never closed",
            self.text
        ))
    }

    fn unexpected(&self, wanted: &str) -> String {
        format!("expected {wanted} at byte {} of {:?}", self.at, self.text)
    }
}

/// The credentials of a push and the token it holds; sends requests, answering a
/// bearer challenge once per request.
pub(crate) struct RegistryAuth<'a> {
    client: &'a Client,
    /// The registry and repository, for errors.
    registry: String,
    /// `repository:REPO:pull,push`.
    scope: String,
    basic: Option<(String, String)>,
    token: Option<String>,
    /// Whether `token` came from `RIFFLE_REGISTRY_TOKEN` (not to be renewed).
    given_token: bool,
}

impl<'a> RegistryAuth<'a> {
    /// The credentials in the environment, for pushing to `repository`.
    pub(crate) fn from_env(client: &'a Client, registry: String, repository: &str) -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let basic = var("RIFFLE_REGISTRY_USER").zip(var("RIFFLE_REGISTRY_PASSWORD"));
        let token = var("RIFFLE_REGISTRY_TOKEN");
        Self {
            client,
            registry,
            scope: format!("repository:{repository}:pull,push"),
            basic,
            given_token: token.is_some(),
            token,
        }
    }

    fn failed(&self, what: &str, why: String) -> ImageError {
        ImageError::Push {
            registry: self.registry.clone(),
            what: what.to_string(),
            why,
        }
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match (&self.token, &self.basic) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some((user, password))) => request.basic_auth(user, Some(password)),
            (None, None) => request,
        }
    }

    /// Sends the request `build` makes (for `what`, named in errors) with the
    /// credentials; on a bearer challenge fetches a token and sends it once more.
    /// Any other answer, a second refusal included, is the caller's to judge.
    pub(crate) fn send(
        &mut self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ImageError> {
        let response = self
            .authorize(build())
            .send()
            .map_err(|e| self.failed(what, e.to_string()))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let mut challenges = Vec::new();
        for header in response.headers().get_all(WWW_AUTHENTICATE) {
            let header = String::from_utf8_lossy(header.as_bytes());
            challenges.extend(parse_challenges(&header).map_err(|why| {
                self.failed(
                    what,
                    format!("HTTP 401 with an unreadable challenge: {why}"),
                )
            })?);
        }
        if let Some(bearer) = challenges.iter().find(|c| c.is("bearer")) {
            if self.given_token {
                return Err(self.failed(
                    what,
                    "HTTP 401: the registry refused the token in RIFFLE_REGISTRY_TOKEN".into(),
                ));
            }
            self.token = Some(self.fetch_token(bearer)?);
            return self
                .authorize(build())
                .send()
                .map_err(|e| self.failed(what, e.to_string()));
        }
        if self.basic.is_none() && self.token.is_none() && challenges.iter().any(|c| c.is("basic"))
        {
            return Err(self.failed(
                what,
                "HTTP 401: the registry asks for a user and password \
                 (set RIFFLE_REGISTRY_USER and RIFFLE_REGISTRY_PASSWORD)"
                    .into(),
            ));
        }
        Ok(response)
    }

    /// Asks the challenge's realm for a token for this push's scope (and the
    /// challenge's own scopes, when they differ).
    fn fetch_token(&self, challenge: &Challenge) -> Result<String, ImageError> {
        let Some(realm) = challenge.param("realm") else {
            return Err(self.failed(
                "get a token",
                "the registry's Bearer challenge names no realm".into(),
            ));
        };
        let what = format!("get a token from {realm}");
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| self.failed(&what, format!("the realm is not a URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &self.scope);
            for scope in challenge.param("scope").unwrap_or("").split_whitespace() {
                if !covers(&self.scope, scope) {
                    query.append_pair("scope", scope);
                }
            }
            if let Some((user, _)) = &self.basic {
                query.append_pair("account", user);
            }
        }
        let mut request = self.client.get(url);
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .map_err(|e| self.failed(&what, e.to_string()))?;
        let status = response.status();
        let body = response.text().unwrap_or_default();
        if !status.is_success() {
            let hint = if self.basic.is_none() && status == StatusCode::UNAUTHORIZED {
                " (no RIFFLE_REGISTRY_USER / RIFFLE_REGISTRY_PASSWORD set)"
            } else {
                ""
            };
            return Err(self.failed(
                &what,
                format!(
                    "HTTP {status}{hint}: {}",
                    body.trim().chars().take(300).collect::<String>()
                ),
            ));
        }
        let answer: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| self.failed(&what, format!("the answer is not JSON: {e}")))?;
        ["token", "access_token"]
            .iter()
            .find_map(|key| answer[key].as_str().filter(|t| !t.is_empty()))
            .map(str::to_string)
            .ok_or_else(|| {
                self.failed(
                    &what,
                    "the answer has no \"token\" or \"access_token\"".into(),
                )
            })
    }
}

/// Whether the scope `ours` (`repository:team/app:pull,push`) grants all that
/// `asked` asks for: the same resource, no action beyond ours, in any order.
fn covers(ours: &str, asked: &str) -> bool {
    match (ours.rsplit_once(':'), asked.rsplit_once(':')) {
        (Some((resource, actions)), Some((asked_resource, asked_actions))) => {
            resource == asked_resource
                && asked_actions
                    .split(',')
                    .all(|a| actions.split(',').any(|o| o == a))
        }
        _ => ours == asked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str) -> Challenge {
        let mut all = parse_challenges(header).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn bearer_challenges_keep_commas_inside_quotes() {
        let c = one(
            r#"Bearer realm="http://127.0.0.1:5001/token",service="riffle test",scope="repository:team/app:pull,push""#,
        );
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(
            c.params,
            vec![
                ("realm".into(), "http://127.0.0.1:5001/token".into()),
                ("service".into(), "riffle test".into()),
                ("scope".into(), "repository:team/app:pull,push".into()),
            ]
        );
    }

    #[test]
    fn spaces_bare_values_escapes_and_case() {
        let c = one(r#"bearer  Realm = "a \"quoted\" \\ realm" , error=insufficient_scope ,"#);
        assert!(c.is("Bearer"));
        assert_eq!(c.param("realm"), Some(r#"a "quoted" \ realm"#));
        assert_eq!(c.param("ERROR"), Some("insufficient_scope"));
        assert_eq!(c.param("scope"), None);
        assert_eq!(one("Bearer").params, vec![]);
    }

    #[test]
    fn several_challenges_and_token68() {
        let all = parse_challenges(
            r#"Negotiate abc+/==, Basic realm="Registry Realm", Bearer realm="https://auth.example/token",service=registry.example"#,
        )
        .unwrap();
        let schemes: Vec<_> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Negotiate", "Basic", "Bearer"]);
        assert!(all[0].params.is_empty());
        assert_eq!(all[1].param("realm"), Some("Registry Realm"));
        assert_eq!(all[2].param("service"), Some("registry.example"));
        assert_eq!(all[2].param("realm"), Some("https://auth.example/token"));
    }

    #[test]
    fn the_push_scope_covers_the_scopes_a_registry_names() {
        let ours = "repository:team/app:pull,push";
        assert!(covers(ours, "repository:team/app:push,pull"));
        assert!(covers(ours, "repository:team/app:pull"));
        assert!(!covers(ours, "repository:team/app:delete"));
        assert!(!covers(ours, "repository:team/base:pull"));
        assert!(!covers(ours, "registry:catalog:*"));
    }

    #[test]
    fn malformed_challenges_are_errors_that_say_where() {
        let err = parse_challenges(r#"Bearer realm="open"#).unwrap_err();
        assert!(err.contains("never closed"), "{err}");
        let err = parse_challenges(r#"Bearer realm="a" service="b""#).unwrap_err();
        assert!(err.contains("expected a comma at byte 17"), "{err}");
        let err = parse_challenges(r#"Bearer realm= , x=y"#).unwrap_err();
        assert!(err.contains("a value for \"realm\""), "{err}");
        assert!(parse_challenges(r#"Bearer realm="a", scope="#).is_err());
        let err = parse_challenges("=x").unwrap_err();
        assert!(err.contains("an authentication scheme"), "{err}");
        assert_eq!(parse_challenges(" , ").unwrap(), vec![]);
    }
}
