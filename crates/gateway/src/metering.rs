//! Metered (`upto`) inference in the gateway: what a metered option charges, how a request is
//! fitted under the ceiling the buyer signed, and how the usage is read from the answer (a JSON
//! body, or the final chunk of an SSE stream, asked for with `stream_options.include_usage`).
//!
//! The money path stays the paygate's (docs/design/metering.md): the payment is claimed and
//! verified for its ceiling before the upstream runs, and settled once, after the answer, for
//! the amount computed here.

use obol_x402::metering::{Measured, NoUsage, TokenRates, Usage};
use obol_x402::primitives::U256;
use serde_json::{Map, Value, json};

/// How a metered payment option charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    /// Prompt and completion rates.
    pub rates: TokenRates,
    /// The token's decimals.
    pub decimals: u8,
    /// What a call reporting no usage costs.
    pub no_usage: NoUsage,
}

/// Prompt tokens are estimated before the call as one per this many body bytes.
pub const BYTES_PER_PROMPT_TOKEN: u64 = 4;

/// The longest SSE line scanned for usage; longer lines are skipped.
const MAX_LINE: usize = 1 << 20;

/// A metered charge and how it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Atomic units, at most the ceiling.
    pub amount: U256,
    /// From the usage, the estimate or the ceiling.
    pub measured: Measured,
    /// The usage reported, if any.
    pub usage: Option<Usage>,
}

impl Charge {
    /// The receipt's `extensions.metering`.
    pub fn receipt_extension(&self) -> Value {
        let mut metering = json!({
            "measured": self.measured,
            "amount": self.amount.to_string(),
        });
        if let Some(usage) = self.usage {
            metering["promptTokens"] = usage.prompt_tokens.into();
            metering["completionTokens"] = usage.completion_tokens.into();
        }
        metering
    }
}

/// What an offer's metered calls used and were charged, in all ([`crate::guard`] keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeteredUsage {
    /// Settled metered calls.
    pub requests: u64,
    /// Prompt tokens they reported.
    pub prompt_tokens: u64,
    /// Completion tokens they reported.
    pub completion_tokens: u64,
    /// What they were charged, in atomic units.
    pub charged: U256,
}

impl MeteredUsage {
    /// This usage with one more settled call, charged `charge`.
    pub fn plus(self, charge: &Charge) -> Self {
        let usage = charge.usage.unwrap_or_default();
        Self {
            requests: self.requests.saturating_add(1),
            prompt_tokens: self.prompt_tokens.saturating_add(usage.prompt_tokens),
            completion_tokens: self
                .completion_tokens
                .saturating_add(usage.completion_tokens),
            charged: self.charged.saturating_add(charge.amount),
        }
    }
}

/// Why a metered request cannot run under the ceiling signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverCeiling(pub String);

impl Metering {
    /// What a call with `usage` (none: the offer's `noUsage` rule) costs under `ceiling`.
    pub fn charge(&self, ceiling: U256, usage: Option<Usage>) -> Charge {
        let (amount, measured) = match usage {
            Some(usage) => (
                self.rates
                    .charge(usage, self.decimals)
                    .map_or(ceiling, |c| c.min(ceiling)),
                Measured::Usage,
            ),
            None => match self.no_usage {
                NoUsage::Estimate => (
                    self.rates
                        .estimate(ceiling, self.decimals)
                        .unwrap_or(ceiling),
                    Measured::Estimate,
                ),
                NoUsage::Ceiling => (ceiling, Measured::Ceiling),
            },
        };
        Charge {
            amount,
            measured,
            usage,
        }
    }

    /// Fits a chat request under `ceiling`: a `max_tokens` (or `max_completion_tokens`) that
    /// may cost more is refused; none is set to what fits; a streamed request asks for the
    /// usage in its final chunk. A body that is not a JSON object passes unchanged (the charge
    /// is still capped at the ceiling).
    pub fn fit(&self, body: &[u8], ceiling: U256) -> Result<Option<Vec<u8>>, OverCeiling> {
        let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
            return Ok(None);
        };
        let prompt = (body.len() as u64).div_ceil(BYTES_PER_PROMPT_TOKEN);
        let allowance = self
            .rates
            .completion_allowance(ceiling, prompt, self.decimals);
        if allowance == 0 {
            return Err(OverCeiling(format!(
                "the prompt (about {prompt} tokens) alone may cost more than the {ceiling} atomic units signed"
            )));
        }
        let mut asked = None;
        for key in ["max_tokens", "max_completion_tokens"] {
            match request.get(key) {
                None | Some(Value::Null) => {}
                Some(value) => {
                    // A limit the gateway cannot read is one the model might still honour.
                    let n = value.as_u64().ok_or_else(|| {
                        OverCeiling(format!("{key} must be a whole number of tokens"))
                    })?;
                    asked = asked.max(Some(n));
                }
            }
        }
        match asked {
            Some(asked) if asked > allowance => {
                return Err(OverCeiling(format!(
                    "max_tokens {asked} may cost more than the {ceiling} atomic units signed; at most {allowance} fit with this prompt"
                )));
            }
            Some(_) => {}
            None => {
                request.insert("max_tokens".into(), allowance.into());
            }
        }
        if request.get("stream").and_then(Value::as_bool) == Some(true) {
            let options = request
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), true.into());
            }
        }
        Ok(serde_json::to_vec(&Value::Object(request)).ok())
    }
}

/// The usage an answer reports: OpenAI's `usage.{prompt_tokens, completion_tokens}` or the
/// `input_tokens` / `output_tokens` form; `None` when it reports none.
pub fn usage_of(answer: &Value) -> Option<Usage> {
    let usage = answer.get("usage")?;
    let count = |keys: [&str; 2]| keys.iter().find_map(|k| usage.get(*k)?.as_u64());
    let prompt = count(["prompt_tokens", "input_tokens"]);
    let completion = count(["completion_tokens", "output_tokens"]);
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
    })
}

/// Reads the usage of an SSE stream as it passes: the last `data:` event that reports one.
#[derive(Debug, Default)]
pub struct UsageScanner {
    line: Vec<u8>,
    /// The current line is longer than [`MAX_LINE`]: skipped to its end.
    skipping: bool,
    usage: Option<Usage>,
}

impl UsageScanner {
    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let ends = chunk.last() == Some(&b'\n');
            if !self.skipping {
                if self.line.len() + chunk.len() > MAX_LINE {
                    self.skipping = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            if ends {
                if !self.skipping {
                    self.event_line();
                }
                self.line.clear();
                self.skipping = false;
            }
        }
    }

    fn event_line(&mut self) {
        let line = self.line.trim_ascii();
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        if let Ok(event) = serde_json::from_slice::<Value>(data.trim_ascii())
            && let Some(usage) = usage_of(&event)
        {
            self.usage = Some(usage);
        }
    }

    /// The usage seen so far (a final line without its newline counts).
    pub fn usage(&mut self) -> Option<Usage> {
        if !self.line.is_empty() && !self.skipping {
            self.event_line();
            self.line.clear();
        }
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metering(no_usage: NoUsage) -> Metering {
        Metering {
            rates: TokenRates {
                input: "0.15".parse().unwrap(),
                output: "0.6".parse().unwrap(),
            },
            decimals: 6,
            no_usage,
        }
    }

    #[test]
    fn charges_by_usage_estimate_or_ceiling() {
        let ceiling = U256::from(2458);
        let usage = Usage {
            prompt_tokens: 12,
            completion_tokens: 34,
        };
        let charged = metering(NoUsage::Estimate).charge(ceiling, Some(usage));
        assert_eq!(
            (charged.amount, charged.measured),
            (U256::from(23), Measured::Usage)
        );
        assert_eq!(
            charged.receipt_extension(),
            json!({"measured": "usage", "amount": "23", "promptTokens": 12, "completionTokens": 34})
        );
        let huge = Usage {
            prompt_tokens: 0,
            completion_tokens: 1_000_000,
        };
        assert_eq!(
            metering(NoUsage::Estimate)
                .charge(ceiling, Some(huge))
                .amount,
            ceiling,
            "never above the ceiling"
        );
        let estimate = metering(NoUsage::Estimate).charge(ceiling, None);
        assert_eq!(
            (estimate.amount, estimate.measured),
            (U256::from(600), Measured::Estimate)
        );
        let all = metering(NoUsage::Ceiling).charge(ceiling, None);
        assert_eq!((all.amount, all.measured), (ceiling, Measured::Ceiling));
    }

    #[test]
    fn requests_are_fitted_under_the_ceiling() {
        let m = metering(NoUsage::Estimate);
        let ceiling = U256::from(2458);
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let fitted: Value =
            serde_json::from_slice(&m.fit(body, ceiling).unwrap().unwrap()).unwrap();
        let prompt = (body.len() as u64).div_ceil(4);
        assert_eq!(
            fitted["max_tokens"],
            m.rates.completion_allowance(ceiling, prompt, 6)
        );
        assert_eq!(fitted["stream_options"]["include_usage"], true);
        assert_eq!(fitted["messages"][0]["content"], "hi");

        let greedy = br#"{"model":"m","messages":[],"max_tokens":100000}"#;
        let refused = m.fit(greedy, ceiling).unwrap_err();
        assert!(
            refused.0.contains("max_tokens 100000 may cost more"),
            "{refused:?}"
        );
        let modest = br#"{"model":"m","messages":[],"max_completion_tokens":10}"#;
        let kept: Value =
            serde_json::from_slice(&m.fit(modest, ceiling).unwrap().unwrap()).unwrap();
        assert!(kept.get("max_tokens").is_none());
        assert!(m.fit(b"not json", ceiling).unwrap().is_none());
        let sly = br#"{"model":"m","messages":[],"max_tokens":"100000"}"#;
        assert!(m.fit(sly, ceiling).unwrap_err().0.contains("whole number"));
        let long = vec![b' '; 100_000];
        let mut big = br#"{"messages":""#.to_vec();
        big.extend_from_slice(&long);
        big.extend_from_slice(br#""}"#);
        assert!(
            m.fit(&big, U256::from(10))
                .unwrap_err()
                .0
                .contains("the prompt")
        );
    }

    #[test]
    fn usage_is_read_from_bodies_and_streams() {
        assert_eq!(
            usage_of(&json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4}})),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        assert_eq!(
            usage_of(&json!({"usage": {"input_tokens": 5, "output_tokens": 6}})),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 6
            })
        );
        assert_eq!(usage_of(&json!({"usage": null})), None);
        assert_eq!(usage_of(&json!({"choices": []})), None);

        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":8}}\n\n\
                      data: [DONE]\n\n";
        // Fed in awkward pieces: lines split across chunks.
        let mut scanner = UsageScanner::default();
        for piece in stream.as_bytes().chunks(7) {
            scanner.feed(piece);
        }
        assert_eq!(
            scanner.usage(),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 8
            })
        );
        // An over-long line is skipped, not buffered; the next one still counts.
        let mut scanner = UsageScanner::default();
        scanner.feed(b"data: ");
        scanner.feed(&vec![b'x'; MAX_LINE + 10]);
        scanner.feed(b"\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}");
        assert_eq!(
            scanner.usage(),
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2
            })
        );
    }
}
