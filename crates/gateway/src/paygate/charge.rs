//! Taking a payment: the one admission path of every entry point that charges. The HTTP
//! paygate maps a refusal to its 402 (or 412, 5xx); the MCP tools (docs/design/agents.md) will
//! map it to their PaymentRequired result.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse as _;

use super::{Paid, Shared, check_window, identity, refused};
use crate::challenge::{self, PaymentFailure};
use crate::error::GatewayError;
use crate::matching;
use crate::metrics::Labels;
use crate::route::Offer;

/// Why a payment was not taken.
pub(super) enum Refused {
    /// The buyer can pay again: a new challenge saying what was wrong (402; 412 when a Permit2
    /// allowance is missing).
    Rechallenge {
        /// What was wrong.
        failure: PaymentFailure,
        /// The status to answer with.
        status: StatusCode,
    },
    /// The gateway or the facilitator failed.
    Error(GatewayError),
}

impl Refused {
    /// As an HTTP answer for `offer` at `resource_url`.
    pub(super) fn into_response(self, offer: &Offer, resource_url: &str) -> Response<Body> {
        match self {
            Self::Rechallenge { failure, status } => {
                let required =
                    challenge::payment_required(offer, resource_url.to_owned(), Some(&failure));
                let mut response = challenge::response(&required);
                *response.status_mut() = status;
                response
            }
            Self::Error(error) => error.into_response(),
        }
    }
}

impl Shared {
    /// Match, claim, check the window, verify, check the payer's exposure: a payment taken
    /// for `offer` (its claim released when the [`Paid`] is dropped), or why not. Every entry
    /// point that charges (HTTP today, MCP next) comes through here and through
    /// [`Shared::settle`].
    pub(super) async fn take(
        &self,
        offer: &Arc<Offer>,
        presented: &matching::Presented,
        resource_url: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Paid, Refused> {
        let rechallenge = |failure: PaymentFailure, labels: &Labels| {
            labels.failure(failure.reason);
            Refused::Rechallenge {
                failure,
                status: StatusCode::PAYMENT_REQUIRED,
            }
        };
        let (option, verify) = match matching::match_payment(offer, presented, resource_url) {
            Ok(found) => found,
            Err(failure) => return Err(rechallenge(failure, &Labels::new(offer, None))),
        };
        let index = offer.options.iter().position(|o| std::ptr::eq(o, option));
        let labels = Labels::new(offer, index);
        let taken = match identity(&verify, option) {
            Ok(found) => found,
            Err(failure) => return Err(rechallenge(failure, &labels)),
        };
        let amount = option.requirements.amount.0;
        let claim = match self
            .guard
            .claim(taken.id, taken.digest, amount, taken.expires_at)
            .await
        {
            Ok(claim) => claim,
            Err(refusal) => {
                return Err(match refused(&refusal) {
                    Ok(failure) => rechallenge(failure, &labels),
                    Err(error) => {
                        labels.failure(error.reason);
                        Refused::Error(error)
                    }
                });
            }
        };
        let mut paid = Paid {
            verify,
            ticket: claim.ticket,
            expires_at: taken.expires_at,
            labels,
            retry: claim.unsettled.is_some(),
            settle_before_stream: false,
            metered: option.metering.map(|metering| super::Metered {
                metering,
                ceiling: option.requirements.amount(),
            }),
        };
        if paid.retry {
            // Taken before, settlement pending or unknown: the facilitator decides, at settle.
            return Ok(paid);
        }
        if let Err(failure) =
            check_window(taken.expires_at, option.requirements.max_timeout_seconds)
        {
            return Err(rechallenge(failure, &paid.labels));
        }
        if let Some(limit) = &self.verify_limit
            && let Err(refused) = limit.admit(client)
        {
            paid.labels.failure("rate_limited");
            return Err(Refused::Error(refused));
        }
        let verdict = tokio::time::timeout(
            self.config.verify_timeout,
            self.facilitator.verify(&paid.verify),
        )
        .await;
        match verdict {
            Err(_) => {
                paid.labels.failure("facilitator_unreachable");
                return Err(Refused::Error(GatewayError::facilitator_unreachable(
                    format!("no verify answer within {:?}", self.config.verify_timeout),
                )));
            }
            Ok(Err(error)) => {
                let reason = if error.retriable() {
                    "facilitator_unreachable"
                } else {
                    "facilitator_error"
                };
                paid.labels.failure(reason);
                tracing::warn!(offer = %offer.name, reason, "facilitator verify failed");
                let response = if error.retriable() {
                    GatewayError::facilitator_unreachable(error.to_string())
                } else {
                    GatewayError::facilitator_error(error.to_string(), false)
                };
                return Err(Refused::Error(response));
            }
            Ok(Ok(verdict)) if !verdict.is_valid => {
                if let Some(limit) = &self.verify_limit {
                    limit.refused(client);
                }
                let reason = verdict.invalid_reason.unwrap_or_else(|| "unknown".into());
                let failure = PaymentFailure {
                    reason: "payment_invalid",
                    detail: match verdict.invalid_message {
                        Some(message) => format!("{reason}: {message}"),
                        None => reason.clone(),
                    },
                    hint: Some(
                        "sign the EIP-712 domain advertised in accepts[].extra (name, version)",
                    ),
                };
                let mut refusal = rechallenge(failure, &paid.labels);
                if reason == obol_facilitator::Reason::Permit2AllowanceRequired.as_str()
                    && let Refused::Rechallenge { status, .. } = &mut refusal
                {
                    *status = StatusCode::PRECONDITION_FAILED;
                }
                return Err(refusal);
            }
            Ok(Ok(_)) => {}
        }
        if !self.facilitator.reads_balances() {
            paid.settle_before_stream = true;
        } else if !claim.reserved_before.is_zero() {
            // Each verify checks the balance against this payment alone; with others of the
            // same payer still unsettled, the balance must cover all of them.
            let id = paid.ticket.id();
            let balance = tokio::time::timeout(
                self.config.verify_timeout,
                self.facilitator.balance(id.chain_id, id.asset, id.payer),
            )
            .await;
            match balance {
                Ok(Ok(Some(balance))) => {
                    let needed = claim.reserved_before.saturating_add(amount);
                    if balance < needed {
                        let failure = PaymentFailure {
                            reason: "insufficient_funds",
                            detail: format!(
                                "the payer's balance ({balance}) does not cover this payment ({amount}) on top of {} already authorized here and not yet settled",
                                claim.reserved_before
                            ),
                            hint: Some("wait for your earlier calls to finish, or fund the wallet"),
                        };
                        return Err(rechallenge(failure, &paid.labels));
                    }
                }
                Ok(Ok(None) | Err(_)) | Err(_) => paid.settle_before_stream = true,
            }
        }
        Ok(paid)
    }

    /// [`Shared::take`] for the HTTP paygate: `Err` is the finished answer.
    pub(super) async fn admit(
        &self,
        offer: &Arc<Offer>,
        presented: &matching::Presented,
        resource_url: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Paid, Box<Response<Body>>> {
        self.take(offer, presented, resource_url, client)
            .await
            .map_err(|refusal| Box::new(refusal.into_response(offer, resource_url)))
    }
}
