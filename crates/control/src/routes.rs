//! From published `ServiceOffer`s to the gateway's route table.

use std::sync::Arc;

use obol_gateway::{Offer, OfferKind, PaymentOption, Route, RouteTable, SettleMode};
use obol_x402::network;
use obol_x402::pricing::{Price, PricingError};
use obol_x402::token::{Token, TokenError, TokenRegistry, TransferMethod};
use obol_x402::wire::{DecimalU256, v2};
use serde_json::{Map, Value};

use crate::offer::{AssetSpec, OfferType, ServiceOffer, SettleTiming};

/// Default payment validity when the offer does not say (obol-stack.md §4.7).
pub const DEFAULT_MAX_TIMEOUT_SECONDS: u64 = 300;

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

/// The offer's price and the per-request requirement.
pub fn payment_option(
    registry: &TokenRegistry,
    offer: &ServiceOffer,
) -> Result<(Price, PaymentOption), RouteError> {
    let payment = &offer.spec.payment;
    let price = Price::from_fields(
        payment.price.per_request.as_deref(),
        payment.price.per_mtok.as_deref(),
        payment.price.per_hour.as_deref(),
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
    Ok((
        price,
        PaymentOption {
            requirements,
            asset_symbol: token.symbol.clone(),
            eip2612_gas_sponsoring: token.eip2612_gas_sponsoring,
        },
    ))
}

/// The gateway offer for a published `ServiceOffer` (embedded mode: upstream by URL).
pub fn gateway_offer(registry: &TokenRegistry, offer: &ServiceOffer) -> Result<Offer, RouteError> {
    let (price, option) = payment_option(registry, offer)?;
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
    };
    Ok(Offer {
        namespace: offer.metadata.namespace.clone(),
        name: offer.metadata.name.clone(),
        kind,
        upstream,
        strip_prefix: offer.effective_path(),
        upstream_auth: None,
        price,
        options: vec![option],
        description: offer.spec.description.clone().unwrap_or_else(|| {
            format!(
                "x402 payment-gated {} service {}",
                offer.spec.type_.as_str(),
                offer.metadata.name
            )
        }),
        mime_type: "application/json".into(),
        settle: match offer.spec.payment.settle {
            SettleTiming::ServeFirst => SettleMode::ServeFirst,
            SettleTiming::SettleFirst => SettleMode::SettleFirst,
        },
    })
}

/// The route table of the given published offers, ordered by namespace, name.
pub fn route_table(registry: &TokenRegistry, offers: &[ServiceOffer]) -> RouteTable {
    let mut sorted: Vec<&ServiceOffer> = offers.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let routes = sorted
        .into_iter()
        .filter_map(|offer| match gateway_offer(registry, offer) {
            Ok(gateway) => Some(Route {
                pattern: format!("{}/*", offer.effective_path().trim_start_matches('/')),
                offer: Arc::new(gateway),
            }),
            Err(error) => {
                tracing::warn!(offer = %offer.metadata.name, %error, "offer left out of the route table");
                None
            }
        })
        .collect();
    RouteTable::new(routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::offer;

    #[test]
    fn settle_timing_reaches_the_gateway_and_defaults_to_serve_first() {
        let registry = TokenRegistry::builtin();
        let mut spec = offer();
        assert_eq!(
            gateway_offer(&registry, &spec).unwrap().settle,
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
            gateway_offer(&registry, &spec).unwrap().settle,
            SettleMode::SettleFirst
        );
    }
}
