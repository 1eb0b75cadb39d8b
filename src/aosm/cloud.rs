//! Azure clouds: ARM endpoint, Entra authority host and ARM token scope.

use super::error::AosmError;

/// Which Azure cloud a store lives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// Azure public cloud.
    #[default]
    AzurePublic,
    /// Azure US Government.
    AzureUSGovernment,
    /// Azure operated by 21Vianet (China).
    AzureChina,
    /// Endpoints given explicitly.
    Custom,
}

/// Resolved endpoints for one store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudEndpoints {
    /// ARM base URL, no trailing slash.
    pub arm_endpoint: String,
    /// Entra authority host, no trailing slash.
    pub authority_host: String,
    /// Scope to request ARM tokens for.
    pub arm_scope: String,
}

impl Cloud {
    fn defaults(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Cloud::AzurePublic => Some((
                "https://management.azure.com",
                "https://login.microsoftonline.com",
                "https://management.azure.com/.default",
            )),
            Cloud::AzureUSGovernment => Some((
                "https://management.usgovcloudapi.net",
                "https://login.microsoftonline.us",
                "https://management.usgovcloudapi.net/.default",
            )),
            Cloud::AzureChina => Some((
                "https://management.chinacloudapi.cn",
                "https://login.chinacloudapi.cn",
                "https://management.chinacloudapi.cn/.default",
            )),
            Cloud::Custom => None,
        }
    }

    /// Endpoints with per-store overrides applied. Overrides keep the cloud's ARM token
    /// scope (an emulator or private endpoint accepts the audience of the cloud it mimics).
    /// For `Custom` without `authority_host`, the controller's `AZURE_AUTHORITY_HOST` is
    /// used, else the public cloud's authority.
    pub fn endpoints(
        self,
        arm_endpoint: Option<&str>,
        authority_host: Option<&str>,
    ) -> Result<CloudEndpoints, AosmError> {
        let env = std::env::var("AZURE_AUTHORITY_HOST")
            .ok()
            .filter(|v| !v.is_empty());
        self.endpoints_with(arm_endpoint, authority_host, env.as_deref())
    }

    fn endpoints_with(
        self,
        arm_endpoint: Option<&str>,
        authority_host: Option<&str>,
        env_authority_host: Option<&str>,
    ) -> Result<CloudEndpoints, AosmError> {
        let defaults = self.defaults();
        let arm = arm_endpoint
            .or(defaults.map(|d| d.0))
            .ok_or_else(|| AosmError::Config("cloud Custom needs armEndpoint".into()))?;
        let public_authority = Cloud::AzurePublic.defaults().map(|d| d.1);
        let authority = authority_host
            .or(defaults.map(|d| d.1))
            .or(env_authority_host)
            .or(public_authority)
            .ok_or_else(|| AosmError::Config("cloud Custom needs authorityHost".into()))?;
        for (name, value) in [("armEndpoint", arm), ("authorityHost", authority)] {
            let url = url::Url::parse(value)
                .map_err(|e| AosmError::Config(format!("{name} {value:?} is not a URL: {e}")))?;
            if url.scheme() != "https" {
                return Err(AosmError::Config(format!(
                    "{name} {value:?} must use https"
                )));
            }
        }
        let scope = defaults
            .map(|d| d.2.to_string())
            .unwrap_or_else(|| format!("{}/.default", arm.trim_end_matches('/')));
        Ok(CloudEndpoints {
            arm_endpoint: arm.trim_end_matches('/').to_string(),
            authority_host: authority.trim_end_matches('/').to_string(),
            arm_scope: scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_defaults_and_overrides() {
        let e = Cloud::AzurePublic.endpoints(None, None).unwrap();
        assert_eq!(e.arm_endpoint, "https://management.azure.com");
        assert_eq!(e.arm_scope, "https://management.azure.com/.default");
        let e = Cloud::AzurePublic
            .endpoints(
                Some("https://127.0.0.1:8443/"),
                Some("https://127.0.0.1:8443"),
            )
            .unwrap();
        assert_eq!(e.arm_endpoint, "https://127.0.0.1:8443");
        assert_eq!(e.arm_scope, "https://management.azure.com/.default");
        assert!(Cloud::Custom.endpoints(None, Some("https://a")).is_err());
        let custom = |env| {
            Cloud::Custom
                .endpoints_with(Some("https://arm.x"), None, env)
                .unwrap()
                .authority_host
        };
        assert_eq!(custom(Some("https://login.x/")), "https://login.x");
        assert_eq!(custom(None), "https://login.microsoftonline.com");
        assert_eq!(
            Cloud::AzureChina
                .endpoints_with(None, None, Some("https://login.x"))
                .unwrap()
                .authority_host,
            "https://login.chinacloudapi.cn",
            "a named cloud keeps its own authority"
        );
        assert!(
            Cloud::AzurePublic
                .endpoints(Some("http://x"), None)
                .is_err()
        );
        assert_eq!(
            Cloud::Custom
                .endpoints(Some("https://arm.x"), Some("https://login.x"))
                .unwrap()
                .arm_scope,
            "https://arm.x/.default"
        );
    }
}
