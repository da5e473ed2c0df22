//! Outbound HTTP from guests (`wasi:http/outgoing-handler`), denied unless the
//! function's manifest lists the origin. Without this a guest could reach any
//! address the node can, including its own admin API and private networks.

use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed origin: `https://api.example.com`, `http://*.example.com:8080`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRule {
    scheme: String,
    /// Lowercase host; a leading `*.` matches any subdomain.
    host: String,
    port: Option<u16>,
}

impl OutboundRule {
    /// Parses `scheme://host[:port]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("allowed_outbound_hosts entry `{text}` must look like `https://api.example.com[:port]`");
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(bad());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad());
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(scheme) = uri.scheme_str() else {
            return false;
        };
        let Some(host) = uri.host() else { return false };
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        scheme == self.scheme && host_ok && port == self.port.unwrap_or(default_port)
    }
}

/// The `wasi:http` hooks for one invocation: the outbound allow-list.
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    rules: Arc<[OutboundRule]>,
}

impl OutboundPolicy {
    /// A policy from manifest entries (already validated at deploy).
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let rules = entries
            .iter()
            .map(|e| OutboundRule::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules: rules.into() })
    }

    /// Whether a request to `uri` may leave the node.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        self.rules.iter().any(|rule| rule.allows(uri))
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if !self.allows(request.uri()) {
            tracing::debug!(uri = %request.uri(), "outbound request denied");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> http::Uri {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rules_match_scheme_host_and_port() {
        let policy = OutboundPolicy::new(&["https://api.example.com".into(), "http://*.internal.dev:8080".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.allows(&uri("https://api.example.com/x")));
        assert!(policy.allows(&uri("https://API.example.com:443/x")));
        assert!(!policy.allows(&uri("http://api.example.com/x")));
        assert!(!policy.allows(&uri("https://api.example.com:8443/x")));
        assert!(!policy.allows(&uri("https://evil.com/api.example.com")));
        assert!(policy.allows(&uri("http://a.internal.dev:8080/")));
        assert!(!policy.allows(&uri("http://internal.dev:8080/")));
        assert!(!OutboundPolicy::default().allows(&uri("https://api.example.com/")));
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            "api.example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://x.com:99999",
            "https://",
        ] {
            assert!(OutboundRule::parse(bad).is_err(), "{bad}");
        }
    }
}
