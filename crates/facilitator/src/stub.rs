//! [`Approving`]: a facilitator that accepts every payment instantly and touches no chain. For
//! benchmarks that measure everything but the chain; never for serving real payments.

use async_trait::async_trait;
use obol_x402::wire::{
    SettleRequest, SettleResponse, SupportedResponse, VerifyRequest, VerifyResponse,
};

use crate::{Facilitator, FacilitatorError};

/// Says yes to every verify and settle, with a fixed transaction hash. A settle of an `upto`
/// payment answers the amount it was asked to settle, as a real facilitator reports what it
/// moved (the gateway records it with the settlement).
#[derive(Debug, Clone, Copy, Default)]
pub struct Approving;

#[async_trait]
impl Facilitator for Approving {
    async fn verify(&self, _: &VerifyRequest) -> Result<VerifyResponse, FacilitatorError> {
        Ok(VerifyResponse {
            is_valid: true,
            ..VerifyResponse::default()
        })
    }

    async fn settle(&self, request: &SettleRequest) -> Result<SettleResponse, FacilitatorError> {
        let requirements = request.requirements_v2();
        Ok(SettleResponse {
            success: true,
            transaction: format!("0x{}", "ab".repeat(32)),
            amount: (requirements.scheme == "upto").then_some(requirements.amount),
            network: requirements.network,
            ..SettleResponse::default()
        })
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        Ok(SupportedResponse::default())
    }
}
