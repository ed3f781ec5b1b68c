//! `buy list`, `buy status`, `buy cancel`: what the stack holds, with live counts from the proxy.

use super::*;

/// Every purchase with its live remaining and spent counts (`buy list --json`'s rows).
pub(crate) async fn rows(ctx: &Context) -> anyhow::Result<Vec<Value>> {
    let (client, buyer) = stack(ctx).await?;
    let purchases = client.list::<PurchaseRequestSpec>().await?;
    let live = live_counts(&buyer).await;
    let tokens = tokens::registry(ctx)?;
    Ok(purchases
        .iter()
        .map(|p| {
            let meta = &p.metadata;
            let (remaining, spent) = live
                .get(&pool_name(&meta.namespace, &meta.name))
                .map_or((u64::from(p.status.remaining), u64::from(p.status.spent)), |l| {
                    (l.remaining, l.spent)
                });
            let ready = condition(&p.status.conditions, "Ready")
                .is_some_and(|c| c.status == ConditionStatus::True);
            json!({"namespace": meta.namespace, "name": meta.name, "model": p.spec.model,
                   "endpoint": p.spec.endpoint, "price": price_of(&tokens, p), "remaining": remaining,
                   "spent": spent, "ready": ready})
        })
        .collect())
}

pub(crate) async fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let rows = rows(ctx).await?;
    if ctx.json {
        output::json(&Value::Array(rows))?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no purchases; buy with `obol buy inference <seller-url>`");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<20} {:<14} {:>9} {:>6} {:<5} ENDPOINT",
        "NAME", "MODEL", "PRICE", "REMAINING", "SPENT", "READY"
    );
    for row in &rows {
        let s = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
        println!(
            "{:<24} {:<20} {:<14} {:>9} {:>6} {:<5} {}",
            format!("{}/{}", s("namespace"), s("name")),
            clean(&s("model")),
            s("price"),
            // serde_json's Display ignores widths: format the plain values.
            row["remaining"].as_u64().unwrap_or_default(),
            row["spent"].as_u64().unwrap_or_default(),
            row["ready"].as_bool().unwrap_or_default(),
            clean(&s("endpoint"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn status(ctx: &Context, namespace: &str, name: &str) -> anyhow::Result<ExitCode> {
    let (client, buyer) = stack(ctx).await?;
    let mut purchase = client.get::<PurchaseRequestSpec>(namespace, name).await?;
    if let Some(live) = live_counts(&buyer)
        .await
        .get(&pool_name(namespace, name))
        .copied()
    {
        purchase.status.remaining = u32::try_from(live.remaining).unwrap_or(u32::MAX);
        purchase.status.spent = u32::try_from(live.spent).unwrap_or(u32::MAX);
        purchase.status.total_spent = purchase
            .spec
            .payment
            .spent_total(live.charged, live.unstated);
    }
    // The authorizations are bulky and say nothing a user needs here.
    purchase.spec.pre_signed_auths.clear();
    if ctx.json {
        output::json(&serde_json::to_value(&purchase)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let model = format!("paid/{}", purchase.spec.model);
    println!(
        "{namespace}/{name}: {} → {}",
        clean(&model),
        clean(&purchase.spec.endpoint)
    );
    println!(
        "  price {} on {} to {}",
        price_of(&tokens::registry(ctx)?, &purchase),
        purchase.spec.payment.network,
        purchase.spec.payment.pay_to
    );
    println!(
        "  remaining {}, spent {}, signed {}{}",
        purchase.status.remaining,
        purchase.status.spent,
        purchase.status.total_signed,
        purchase
            .status
            .signer_address
            .as_deref()
            .map(|s| format!(" by {s}"))
            .unwrap_or_default()
    );
    if let Some(total) = &purchase.status.total_spent {
        println!(
            "  total spent {total}; wallet balance {}",
            purchase
                .status
                .wallet_balance
                .as_deref()
                .unwrap_or("unknown")
        );
    }
    println!("  buyer proxy: http://{buyer}/v1");
    for c in &purchase.status.conditions {
        println!(
            "  {:<12} {:<7} {:<16} {}",
            c.type_,
            format!("{:?}", c.status),
            c.reason,
            clean(&c.message)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The unspent authorizations of a purchase (an error when there is none).
async fn unspent(ctx: &Context, namespace: &str, name: &str) -> anyhow::Result<u64> {
    let (client, buyer) = stack(ctx).await?;
    client.get::<PurchaseRequestSpec>(namespace, name).await?;
    Ok(live_counts(&buyer)
        .await
        .get(&pool_name(namespace, name))
        .map_or(0, |l| l.remaining))
}

/// Deletes a purchase and waits until the stack has dropped it; the unspent authorizations it
/// had.
pub(crate) async fn drop_purchase(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> anyhow::Result<u64> {
    let remaining = unspent(ctx, namespace, name).await?;
    let (client, _) = stack(ctx).await?;
    client
        .delete::<PurchaseRequestSpec>(namespace, name)
        .await?;
    wait_gone(&client, namespace, name).await?;
    Ok(remaining)
}

pub(crate) async fn cancel(
    ctx: &Context,
    namespace: &str,
    name: &str,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let remaining = unspent(ctx, namespace, name).await?;
    if !output::confirm(
        &format!(
            "Cancel purchase {namespace}/{name} and drop its {remaining} unspent authorizations?"
        ),
        yes,
    )? {
        output::note("not cancelled");
        return Ok(ExitCode::FAILURE);
    }
    let remaining = drop_purchase(ctx, namespace, name).await?;
    if ctx.json {
        output::json(&json!({"cancelled": format!("{namespace}/{name}"), "dropped": remaining}))?;
    } else {
        println!(
            "purchase {namespace}/{name} cancelled; {remaining} unspent authorizations dropped"
        );
        if remaining > 0 {
            println!("  (they stay valid signatures until they expire; none is kept anywhere)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
