//! From published `ServiceOffer`s to the gateway's route table.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use obol_gateway::limits::Limits;
use obol_gateway::metering::Metering;
use obol_gateway::proxy::UpstreamAuth;
use obol_gateway::{
    Discovery, FreeQuota, Gate, Methods, Offer, OfferKind, PaymentOption, Route, RouteTable,
    SettleMode,
};
use obol_x402::network;
use obol_x402::pricing::{Price, PriceUnit, PricingError};
use obol_x402::primitives::Address;
use obol_x402::token::{Token, TokenError, TokenRegistry, TransferMethod};
use obol_x402::wire::{DecimalU256, v2};
use serde_json::{Map, Value};

use crate::offer::{
    AssetSpec, GateSpec, OfferType, PaymentSpec, PriceSpec, ServiceOffer, SettleTiming,
};
use crate::secrets::SecretSource;

/// Default payment validity when the offer does not say (obol-stack.md §4.7).
pub const DEFAULT_MAX_TIMEOUT_SECONDS: u64 = 300;

/// Per EVM chain id, the address that settles `upto` payments (the facilitator's
/// `extra.facilitatorAddress`): a buyer signs for it. A chain without one offers no `upto`.
pub type Settlers = BTreeMap<u64, Address>;

/// Why an offer cannot be priced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The price is invalid or rounds to nothing.
    #[error(transparent)]
    Price(#[from] PricingError),
    /// The token is not known on the network.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The offer lacks something the route needs.
    #[error("{0}")]
    Incomplete(String),
    /// The upstream credential's secret (or its key) does not exist, or cannot be read or
    /// sent (the message names the secret, never a value).
    #[error("{0}")]
    MissingSecret(String),
}

/// The credential `offer` sends its upstream, read from `secrets`; `None` when it sends none.
pub fn upstream_auth(
    secrets: &dyn SecretSource,
    offer: &ServiceOffer,
) -> Result<Option<UpstreamAuth>, RouteError> {
    let Some(auth) = &offer.spec.upstream.auth else {
        return Ok(None);
    };
    let (namespace, name, key) = (
        &offer.metadata.namespace,
        &auth.secret_ref.name,
        &auth.secret_ref.key,
    );
    let missing = |problem: &dyn std::fmt::Display| {
        RouteError::MissingSecret(format!("secret {namespace}/{name} key {key}: {problem}"))
    };
    let value = secrets
        .get(namespace, name, key)
        .map_err(|e| missing(&e))?
        .ok_or_else(|| missing(&format!("not found ({})", secrets.missing_hint())))?;
    UpstreamAuth::new(auth.header(), value.expose())
        .map(Some)
        .map_err(|problem| missing(&problem))
}

/// The token an offer is paid in: the chain's USDC unless `asset` says otherwise; explicit
/// fields override the registry's.
pub fn resolve_token(
    registry: &TokenRegistry,
    network_name: &str,
    asset: Option<&AssetSpec>,
) -> Result<Token, RouteError> {
    let chain_id =
        network::evm_chain_id(network_name).map_err(|e| RouteError::Incomplete(e.to_string()))?;
    let symbol = asset.and_then(|a| a.symbol.as_deref()).unwrap_or("USDC");
    let base = match asset.and_then(|a| a.address.as_deref()) {
        Some(address) => {
            let address = address.parse().map_err(|_| {
                RouteError::Incomplete(format!("asset address {address:?} is not an address"))
            })?;
            registry
                .by_address(chain_id, address)
                .cloned()
                .unwrap_or(Token {
                    symbol: symbol.to_owned(),
                    chain_id,
                    address,
                    decimals: 6,
                    transfer_method: TransferMethod::Eip3009,
                    eip712_name: String::new(),
                    eip712_version: String::new(),
                    eip2612_gas_sponsoring: false,
                })
        }
        None => registry.resolve(symbol, network_name)?.clone(),
    };
    let mut token = base;
    if let Some(asset) = asset {
        if let Some(decimals) = asset.decimals {
            token.decimals = decimals;
        }
        match asset.transfer_method.as_deref() {
            Some("permit2") => token.transfer_method = TransferMethod::Permit2,
            Some("eip3009") => token.transfer_method = TransferMethod::Eip3009,
            _ => {}
        }
        if let Some(name) = &asset.eip712_name {
            token.eip712_name.clone_from(name);
        }
        if let Some(version) = &asset.eip712_version {
            token.eip712_version.clone_from(version);
        }
        // Gas sponsoring only for the registry's own entry at the same address (anti-spoof).
        token.eip2612_gas_sponsoring = token.eip2612_gas_sponsoring
            && registry
                .by_address(chain_id, token.address)
                .is_some_and(|t| t.eip2612_gas_sponsoring);
    }
    if token.transfer_method == TransferMethod::Eip3009
        && (token.eip712_name.is_empty() || token.eip712_version.is_empty())
    {
        return Err(RouteError::Incomplete(format!(
            "the EIP-712 name and version of token {} are unknown; set payment.asset.eip712Name and eip712Version",
            token.address
        )));
    }
    Ok(token)
}

/// The offer's first way to pay (`payment`): its price and per-request requirement.
pub fn payment_option(
    registry: &TokenRegistry,
    offer: &ServiceOffer,
) -> Result<PaymentOption, RouteError> {
    priced_option(registry, &offer.spec.payment, &offer.spec.payment.price)
}

/// One option per effective payment, in order: each at its own price, or all at `price` (a
/// route's own, the same amount in each token).
pub fn payment_options(
    registry: &TokenRegistry,
    offer: &ServiceOffer,
    price: Option<&PriceSpec>,
) -> Result<Vec<PaymentOption>, RouteError> {
    offer
        .effective_payments()
        .iter()
        .map(|payment| priced_option(registry, payment, price.unwrap_or(&payment.price)))
        .collect()
}

/// `payment`'s requirement at `price` (its own, or a route's).
fn priced_option(
    registry: &TokenRegistry,
    payment: &PaymentSpec,
    price: &PriceSpec,
) -> Result<PaymentOption, RouteError> {
    let price = Price::from_fields(
        price.per_request.as_deref(),
        price.flat_per_mtok(),
        price.per_hour.as_deref(),
    )?;
    let token = resolve_token(registry, &payment.network, payment.asset.as_ref())?;
    let amount = price.per_request_atomic(token.decimals)?;
    let caip2 = network::normalize(&payment.network);
    let mut extra: Map<String, Value> = token.requirement_extra();
    if token.transfer_method == TransferMethod::Permit2 && token.eip712_name.is_empty() {
        extra.remove("name");
        extra.remove("version");
    }
    let requirements = v2::PaymentRequirements {
        scheme: payment.scheme.clone(),
        network: caip2,
        amount: DecimalU256(amount),
        asset: token.address.to_checksum(None),
        pay_to: payment.pay_to.clone(),
        max_timeout_seconds: payment
            .max_timeout_seconds
            .unwrap_or(DEFAULT_MAX_TIMEOUT_SECONDS),
        extra: Some(extra),
    };
    Ok(PaymentOption::exact(requirements, price, &token))
}

/// The metered (`upto`) option of `payment` when it asks for one (`payment.upto`) and
/// `settlers` names who settles on its chain: the ceiling (`maxTokens` at the dearer rate) as
/// the amount, Permit2, `extra.facilitatorAddress`.
pub fn metered_option(
    registry: &TokenRegistry,
    payment: &PaymentSpec,
    settlers: &Settlers,
) -> Result<Option<PaymentOption>, RouteError> {
    let Some(upto) = payment.upto else {
        return Ok(None);
    };
    let rates = payment
        .price
        .token_rates()
        .ok_or_else(|| {
            RouteError::Incomplete(
                "payment.upto needs a price per token (perMTok, or perMTokInput and perMTokOutput)"
                    .into(),
            )
        })?
        .map_err(|e| RouteError::Price(e.into()))?;
    let chain_id = network::evm_chain_id(&payment.network)
        .map_err(|e| RouteError::Incomplete(e.to_string()))?;
    let Some(settler) = settlers.get(&chain_id) else {
        tracing::warn!(
            chain_id,
            "no facilitator settles upto on this chain: the offer is paid exact only"
        );
        return Ok(None);
    };
    let token = resolve_token(registry, &payment.network, payment.asset.as_ref())?;
    let ceiling = rates
        .ceiling(upto.max_tokens(), token.decimals)
        .map_err(|e| RouteError::Price(e.into()))?;
    if ceiling.is_zero() {
        return Err(RouteError::Incomplete(format!(
            "payment.upto: {} tokens cost less than one atomic unit of {}",
            upto.max_tokens(),
            token.symbol
        )));
    }
    let mut extra: Map<String, Value> = token.requirement_extra();
    extra.insert("assetTransferMethod".into(), "permit2".into());
    extra.insert(
        "facilitatorAddress".into(),
        settler.to_checksum(None).into(),
    );
    let requirements = v2::PaymentRequirements {
        scheme: "upto".into(),
        network: network::normalize(&payment.network),
        amount: DecimalU256(ceiling),
        asset: token.address.to_checksum(None),
        pay_to: payment.pay_to.clone(),
        max_timeout_seconds: payment
            .max_timeout_seconds
            .unwrap_or(DEFAULT_MAX_TIMEOUT_SECONDS),
        extra: Some(extra),
    };
    Ok(Some(PaymentOption {
        requirements,
        price: Price {
            unit: PriceUnit::PerMTok,
            amount: rates.output,
        },
        asset_symbol: token.symbol.clone(),
        eip2612_gas_sponsoring: token.eip2612_gas_sponsoring,
        metering: Some(Metering {
            rates,
            decimals: token.decimals,
            no_usage: upto.no_usage,
        }),
    }))
}

/// `status.metered` of `offer`: its metered options as `settlers` make them.
pub fn metered_status(
    registry: &TokenRegistry,
    settlers: &Settlers,
    offer: &ServiceOffer,
) -> Vec<crate::offer::MeteredStatus> {
    offer
        .effective_payments()
        .iter()
        .filter_map(|payment| {
            let option = metered_option(registry, payment, settlers).ok()??;
            let metering = option.metering.as_ref()?;
            Some(crate::offer::MeteredStatus {
                network: payment.network.clone(),
                ceiling: format!(
                    "{} {}",
                    obol_x402::money::format_units(option.requirements.amount(), metering.decimals),
                    option.asset_symbol
                ),
                max_tokens: payment.upto.map(|u| u.max_tokens())?,
                facilitator_address: option
                    .requirements
                    .facilitator_address()
                    .ok()?
                    .to_checksum(None),
            })
        })
        .collect()
}

/// The options `offer`'s 402 lists, as its status records them: the `exact` ones, then the
/// metered ones `status.metered` names a facilitator for (what the storefront and the discovery
/// documents show).
pub fn listed_options(registry: &TokenRegistry, offer: &ServiceOffer) -> Vec<PaymentOption> {
    let settlers: Settlers = offer
        .status
        .metered
        .iter()
        .filter_map(|m| {
            let chain = network::evm_chain_id(&m.network).ok()?;
            Some((chain, m.facilitator_address.parse().ok()?))
        })
        .collect();
    let mut options = payment_options(registry, offer, None).unwrap_or_default();
    for payment in offer.effective_payments() {
        // Only where a settler is recorded: `metered_option` warns about the others.
        let settled = network::evm_chain_id(&payment.network)
            .is_ok_and(|chain| settlers.contains_key(&chain));
        if settled {
            options.extend(metered_option(registry, payment, &settlers).ok().flatten());
        }
    }
    options
}

/// `status.usage` of `offer` from what its metered calls used (`raw`), the charge in the token
/// its metered option is paid in.
pub fn offer_usage(
    registry: &TokenRegistry,
    offer: &ServiceOffer,
    raw: &obol_gateway::metering::MeteredUsage,
) -> crate::offer::OfferUsage {
    let payment = offer
        .effective_payments()
        .iter()
        .find(|p| p.upto.is_some())
        .unwrap_or(&offer.spec.payment);
    let charged = match resolve_token(registry, &payment.network, payment.asset.as_ref()) {
        Ok(token) => format!(
            "{} {}",
            obol_x402::money::format_units(raw.charged, token.decimals),
            token.symbol
        ),
        Err(_) => format!("{} atomic units", raw.charged),
    };
    crate::offer::OfferUsage {
        requests: raw.requests,
        prompt_tokens: raw.prompt_tokens,
        completion_tokens: raw.completion_tokens,
        total_tokens: raw.prompt_tokens.saturating_add(raw.completion_tokens),
        charged,
    }
}

/// The gateway offer for a published `ServiceOffer` (embedded mode: upstream by URL): its
/// `exact` options, then its metered ones (settled by `settlers`).
pub fn gateway_offer(
    registry: &TokenRegistry,
    secrets: &dyn SecretSource,
    settlers: &Settlers,
    offer: &ServiceOffer,
) -> Result<Offer, RouteError> {
    let mut options = payment_options(registry, offer, None)?;
    for payment in offer.effective_payments() {
        options.extend(metered_option(registry, payment, settlers)?);
    }
    let upstream = offer
        .spec
        .upstream
        .url
        .as_deref()
        .ok_or_else(|| {
            RouteError::Incomplete("the embedded gateway needs spec.upstream.url".into())
        })?
        .parse()
        .map_err(|e| RouteError::Incomplete(format!("spec.upstream.url: {e}")))?;
    let kind = match offer.spec.type_ {
        OfferType::Inference | OfferType::FineTuning => OfferKind::Inference,
        OfferType::Agent => OfferKind::Agent,
        OfferType::Http => OfferKind::Http,
        OfferType::Mcp => OfferKind::Mcp,
    };
    Ok(Offer {
        namespace: offer.metadata.namespace.clone(),
        name: offer.metadata.name.clone(),
        kind,
        upstream,
        strip_prefix: offer.effective_path(),
        upstream_auth: upstream_auth(secrets, offer)?,
        options,
        description: offer.spec.description.clone().unwrap_or_else(|| {
            format!(
                "x402 payment-gated {} service {}",
                offer.spec.type_.as_str(),
                offer.metadata.name
            )
        }),
        mime_type: "application/json".into(),
        limits: Limits {
            max_in_flight: offer
                .spec
                .limits
                .and_then(|l| l.max_in_flight)
                .and_then(NonZeroU32::new),
            rps: offer
                .spec
                .limits
                .and_then(|l| l.rps)
                .and_then(NonZeroU32::new),
        },
        hostname: offer.spec.hostname.clone(),
        discovery: discovery(offer),
        mcp: None,
        settle: match offer.spec.payment.settle {
            SettleTiming::ServeFirst => SettleMode::ServeFirst,
            SettleTiming::SettleFirst => SettleMode::SettleFirst,
        },
    })
}

/// What the offer's 402s say about it beyond the price (none when it describes nothing).
fn discovery(offer: &ServiceOffer) -> Option<Arc<Discovery>> {
    let declared = offer.spec.discovery.as_ref();
    let found = Discovery {
        bazaar: crate::discovery::bazaar(offer),
        service_name: declared.and_then(|d| d.service_name.clone()),
        tags: declared.map(|d| d.tags.clone()).unwrap_or_default(),
        icon_url: declared.and_then(|d| d.icon_url.clone()),
    };
    (found != Discovery::default()).then(|| Arc::new(found))
}

/// The gateway routes of a published `ServiceOffer`, one per effective route (an offer without
/// declared routes has one: everything below its path, paid). Routes without a price of their
/// own share one gateway offer; a route with its own price serves a re-priced copy.
pub fn gateway_routes(
    registry: &TokenRegistry,
    secrets: &dyn SecretSource,
    settlers: &Settlers,
    offer: &ServiceOffer,
) -> Result<Vec<Route>, RouteError> {
    let mut base = gateway_offer(registry, secrets, settlers, offer)?;
    let prefix = offer.effective_path();
    if offer.spec.type_ == OfferType::Mcp {
        // One endpoint at the offer's path; each tool call is priced inside it.
        base.mcp = Some(Arc::new(crate::mcp::gateway_tools(registry, offer, &base)?));
        return Ok(vec![Route {
            pattern: prefix,
            methods: Methods::ANY,
            gate: Gate::Free,
            offer: Arc::new(base),
            free_quota: None,
        }]);
    }
    let base = Arc::new(base);
    offer
        .effective_routes()
        .iter()
        .map(|spec| {
            let methods =
                Methods::parse(spec.methods.iter().map(String::as_str)).map_err(|bad| {
                    RouteError::Incomplete(format!("route {}: {bad:?} is not a method", spec.path))
                })?;
            let gate = match spec.gate {
                GateSpec::Paid => Gate::Paid,
                GateSpec::Free => Gate::Free,
                GateSpec::Auth => Gate::Auth,
            };
            let offer = match &spec.price {
                None => base.clone(),
                Some(price) => Arc::new(Offer {
                    options: payment_options(registry, offer, Some(&price.fields()))?,
                    ..(*base).clone()
                }),
            };
            let pattern = route_pattern(&prefix, &spec.path);
            let free_quota = spec
                .free_quota
                .filter(|&n| n > 0 && gate == Gate::Paid)
                .map(|per_day| {
                    Arc::new(FreeQuota {
                        per_day,
                        key: (
                            format!("{}/{}", offer.namespace, offer.name),
                            pattern.clone(),
                        ),
                    })
                });
            Ok(Route {
                pattern,
                methods,
                gate,
                offer,
                free_quota,
            })
        })
        .collect()
}

/// A route path below the offer's `prefix` as a table pattern: `/` is the prefix itself.
pub(crate) fn route_pattern(prefix: &str, path: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    match path {
        "/" => prefix.to_owned(),
        path => format!("{prefix}{path}"),
    }
}

/// The route table of the given published offers, ordered by namespace, name.
pub fn route_table(
    registry: &TokenRegistry,
    secrets: &dyn SecretSource,
    settlers: &Settlers,
    offers: &[ServiceOffer],
) -> RouteTable {
    let mut sorted: Vec<&ServiceOffer> = offers.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let routes = sorted
        .into_iter()
        .flat_map(|offer| match gateway_routes(registry, secrets, settlers, offer) {
            Ok(routes) => routes,
            Err(error) => {
                tracing::warn!(offer = %offer.metadata.name, %error, "offer left out of the route table");
                Vec::new()
            }
        })
        .collect();
    RouteTable::new(routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::NoSecrets;
    use crate::validate::tests::offer;
    use obol_x402::primitives::U256;

    #[test]
    fn a_metered_offer_adds_an_upto_option_where_a_settler_is_known() {
        let registry = TokenRegistry::builtin();
        let mut spec = offer();
        spec.spec.type_ = OfferType::Inference;
        spec.spec.payment.price = serde_json::from_value(
            serde_json::json!({"perMTokInput": "0.15", "perMTokOutput": "0.6"}),
        )
        .unwrap();
        spec.spec.payment.upto = Some(crate::offer::UptoSpec::default());
        let settler: Address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
            .parse()
            .unwrap();
        let settlers = Settlers::from([(84532, settler)]);
        let options = gateway_offer(&registry, &NoSecrets, &settlers, &spec)
            .unwrap()
            .options;
        assert_eq!(options.len(), 2, "exact, then upto");
        // exact: the flat estimate, 1000 tokens at the completion rate.
        assert_eq!(options[0].requirements.amount(), U256::from(600));
        assert!(options[0].metering.is_none());
        let upto = &options[1];
        assert_eq!(upto.requirements.scheme, "upto");
        // 4096 tokens at 0.6 USDC/MTok = 2457.6 → 2458.
        assert_eq!(upto.requirements.amount(), U256::from(2458));
        let extra = upto.requirements.extra.as_ref().unwrap();
        assert_eq!(extra["assetTransferMethod"], "permit2");
        assert_eq!(
            extra["facilitatorAddress"],
            "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
        );
        assert_eq!(extra["name"], "USDC");
        assert_eq!(upto.metering.unwrap().decimals, 6);

        // No settler on the chain: exact only.
        let exact_only = gateway_offer(&registry, &NoSecrets, &Settlers::new(), &spec).unwrap();
        assert_eq!(exact_only.options.len(), 1);

        // The reconciler records the metered option; the documents list it from there.
        assert!(listed_options(&registry, &spec).len() == 1, "none recorded");
        spec.status.metered = metered_status(&registry, &settlers, &spec);
        assert_eq!(
            spec.status.metered,
            [crate::offer::MeteredStatus {
                network: "base-sepolia".into(),
                ceiling: "0.002458 USDC".into(),
                max_tokens: 4096,
                facilitator_address: settler.to_checksum(None),
            }]
        );
        let listed: Vec<_> = listed_options(&registry, &spec)
            .into_iter()
            .map(|o| o.requirements)
            .collect();
        let served: Vec<_> = options.into_iter().map(|o| o.requirements).collect();
        assert_eq!(listed, served, "the documents list what the 402 offers");
        assert!(metered_status(&registry, &Settlers::new(), &spec).is_empty());
    }

    #[test]
    fn settle_timing_reaches_the_gateway_and_defaults_to_serve_first() {
        let registry = TokenRegistry::builtin();
        let mut spec = offer();
        assert_eq!(
            gateway_offer(&registry, &NoSecrets, &Settlers::new(), &spec)
                .unwrap()
                .settle,
            SettleMode::ServeFirst
        );
        let json = serde_json::to_value(&spec.spec.payment).unwrap();
        assert!(json.get("settle").is_none(), "the default is not written");
        spec.spec.payment = serde_json::from_value(serde_json::json!({
            "network": "base-sepolia",
            "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            "price": {"perRequest": "0.001"},
            "settle": "settleFirst"
        }))
        .unwrap();
        assert_eq!(
            gateway_offer(&registry, &NoSecrets, &Settlers::new(), &spec)
                .unwrap()
                .settle,
            SettleMode::SettleFirst
        );
    }

    #[test]
    fn declared_routes_become_patterns_below_the_offer_with_their_own_prices() {
        let registry = TokenRegistry::builtin();
        let mut spec = offer();
        spec.spec.routes = serde_json::from_value(serde_json::json!([
            {"path": "/*", "gate": "free", "methods": ["GET"]},
            {"path": "/", "methods": ["POST"]},
            {"path": "/submit", "methods": ["POST"], "price": "0.5"},
            {"path": "/v1/*/info", "price": {"perRequest": "0.002"}}
        ]))
        .unwrap();
        let routes = gateway_routes(&registry, &NoSecrets, &Settlers::new(), &spec).unwrap();
        let summary: Vec<String> = routes
            .iter()
            .map(|r| {
                let amount = &r.offer.options[0].requirements.amount.0;
                format!("{} {:?} {amount}", r.pattern, r.gate)
            })
            .collect();
        assert_eq!(
            summary,
            [
                "/services/echo/* Free 1000",
                "/services/echo Paid 1000",
                "/services/echo/submit Paid 500000",
                "/services/echo/v1/*/info Paid 2000",
            ]
        );
        assert!(
            Arc::ptr_eq(&routes[0].offer, &routes[1].offer),
            "routes without a price share the offer"
        );
        assert_eq!(routes[2].offer.name, "echo");
        // Without declared routes: everything below the path, paid, any method.
        spec.spec.routes.clear();
        let routes = gateway_routes(&registry, &NoSecrets, &Settlers::new(), &spec).unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(
            (
                routes[0].pattern.as_str(),
                routes[0].gate,
                routes[0].methods
            ),
            ("/services/echo/*", Gate::Paid, Methods::ANY)
        );
    }

    #[test]
    fn each_payment_is_an_option_and_a_route_price_applies_to_each() {
        let registry = TokenRegistry::builtin();
        let mut spec = offer();
        let first = serde_json::to_value(&spec.spec.payment).unwrap();
        spec.spec.payments = serde_json::from_value(serde_json::json!([first, {
            "network": "base-sepolia", "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            "asset": {"symbol": "OBOL"}, "price": {"perRequest": "0.5"}
        }]))
        .unwrap();
        spec.spec.routes = serde_json::from_value(serde_json::json!([
            {"path": "/*"}, {"path": "/big", "price": "2"}
        ]))
        .unwrap();
        let routes = gateway_routes(&registry, &NoSecrets, &Settlers::new(), &spec).unwrap();
        let amounts = |route: &Route| -> Vec<(String, String)> {
            route
                .offer
                .options
                .iter()
                .map(|o| (o.asset_symbol.clone(), o.requirements.amount.0.to_string()))
                .collect()
        };
        let pair = |s: &str, a: &str| (s.to_owned(), a.to_owned());
        assert_eq!(
            amounts(&routes[0]),
            [pair("USDC", "1000"), pair("OBOL", "500000000000000000")]
        );
        assert_eq!(
            amounts(&routes[1]),
            [pair("USDC", "2000000"), pair("OBOL", "2000000000000000000")],
            "the route's price in each token"
        );
    }
}
