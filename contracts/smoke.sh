#!/usr/bin/env bash
# Smoke test of the compiled artifacts on a real anvil (chain id 84532, i.e. Base Sepolia's).
#
#   ANVIL=/path/to/anvil CAST=/path/to/cast ./smoke.sh
#
# Starts its own anvil on a free loopback port, places every runtime bytecode at its canonical
# address with anvil_setCode (as the Rust devnet harness does), initialises the tokens, and checks:
# domain separators and type hashes, EIP-3009 transferWithAuthorization (+ replay, time window,
# high-s, bytes overload, cancel), Permit2 witness transfers through the x402 exact proxy's
# settle / settleWithPermit (+ its revert rules), the ERC-8004 registry, and plain deployments
# (constructor-less create + initialize). Needs bash, node and the two foundry binaries.
set -euo pipefail

ANVIL=${ANVIL:?set ANVIL to the anvil binary}
CAST=${CAST:?set CAST to the cast binary}
HERE=$(cd "$(dirname "$0")" && pwd)
ART="$HERE/artifacts"
for a in TestUSDC TestObol Permit2 X402ExactPermit2Proxy X402UptoPermit2Proxy IdentityRegistry; do
  [ -f "$ART/$a.json" ] || { echo "missing $ART/$a.json; run: node compile.mjs" >&2; exit 1; }
done

# ------------------------------------------------------------------ constants
CHAIN_ID=84532
USDC=0x036CbD53842c5426634e7929541eC2318f3dCF7e
OBOL=0x0a09371a8b011d5110656ceBCc70603e53FD2c78
PERMIT2=0x000000000022D473030F116dDEE9F6B43aC78BA3
PROXY=0x402085c248EeA27D92E8b30b2C58ed07f9E20001
UPTO=0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002
IDENTITY=0x8004A818BFB912233c491871b3d84c89A494BD9e
USDC_DOMAIN_SEPARATOR=0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818
PERMIT2_DOMAIN_SEPARATOR=0x010f27a92fb9a32622f44f001dc4d15706a85b33499cfc2ce9033113ab26592c
MAX=0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff

# anvil's default dev keys
PK0=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 # minter / facilitator
PK1=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d # payer (approves Permit2)
PK2=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a # payee / agent owner
PK3=0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6 # payer without approval
PK4=0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a # agent wallet

# ------------------------------------------------------------------ plumbing
WORK=$(mktemp -d)
APID=""
cleanup() {
  if [ -n "$APID" ]; then kill "$APID" 2>/dev/null || true; wait "$APID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0
ok() { PASS=$((PASS + 1)); echo "  ok  $*"; }
fail() { echo "  FAIL $*" >&2; exit 1; }
section() { echo "== $*"; }

artifact() { node -e 'process.stdout.write(require(process.argv[1])[process.argv[2]])' "$ART/$1.json" "$2"; }
addr() { "$CAST" wallet address --private-key "$1"; }
call() { "$CAST" call --rpc-url "$RPC" "$@"; }
# first token of a cast call result ("1000000 [1e6]" -> "1000000")
callv() { call "$@" | awk 'NR==1{print $1}'; }
# send a tx; prints the receipt JSON; fails if the tx is not mined with status 1
send() {
  local pk=$1; shift
  local out
  out=$("$CAST" send --rpc-url "$RPC" --private-key "$pk" --json "$@") || fail "send $* : $out"
  node -e 'const r=JSON.parse(process.argv[1]); if(r.status!=="0x1"&&r.status!==1&&r.status!=="1"){console.error("status",r.status);process.exit(1)}' "$out" \
    || fail "tx reverted: $*"
  printf '%s' "$out"
}
# does the receipt JSON contain a log with this topic0 (and optional emitter)?
has_log() {
  node -e '
    const [r, t0, emitter] = [JSON.parse(process.argv[1]), process.argv[2].toLowerCase(), (process.argv[3]||"").toLowerCase()];
    const hit = r.logs.some(l => l.topics[0].toLowerCase() === t0 && (!emitter || l.address.toLowerCase() === emitter));
    process.exit(hit ? 0 : 1);' "$1" "$2" "${3:-}"
}
count_logs() {
  node -e 'const r=JSON.parse(process.argv[1]); console.log(r.logs.filter(l=>l.topics[0].toLowerCase()===process.argv[2].toLowerCase()).length)' "$1" "$2"
}
expect_eq() { # got want what
  [ "$(echo "$1" | tr 'A-F' 'a-f')" = "$(echo "$2" | tr 'A-F' 'a-f')" ] && ok "$3" || fail "$3: got '$1', want '$2'"
}
# expect_revert <what> <needle> <cast call args...>: eth_call must revert with output containing needle
expect_revert() {
  local what=$1 needle=$2; shift 2
  local out
  if out=$(call "$@" 2>&1); then fail "$what: expected a revert, call returned '$out'"; fi
  grep -qiF -- "$needle" <<<"$out" && ok "$what" || fail "$what: '$needle' not in: $out"
}
# expect_send_revert <what> <needle> <pk> <cast send args...>: a real tx must be rejected with needle
expect_send_revert() {
  local what=$1 needle=$2 pk=$3; shift 3
  local out
  if out=$("$CAST" send --rpc-url "$RPC" --private-key "$pk" --json "$@" 2>&1); then
    fail "$what: expected the tx to revert, got $out"
  fi
  grep -qiF -- "$needle" <<<"$out" && ok "$what" || fail "$what: '$needle' not in: $out"
}
sign_typed() { "$CAST" wallet sign --private-key "$1" --data --from-file "$2"; }
split_sig() { # sets R S V from a 65-byte 0x signature
  R=0x${1:2:64}; S=0x${1:66:64}; V=$((16#${1:130:2}))
}
rand32() { node -e 'console.log("0x"+require("crypto").randomBytes(32).toString("hex"))'; }
randuint() { node -e 'console.log(BigInt("0x"+require("crypto").randomBytes(32).toString("hex")).toString())'; }
sel() { "$CAST" sig "$1"; }
topic() { "$CAST" keccak "$1"; }

PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
RPC=http://127.0.0.1:$PORT
"$ANVIL" --host 127.0.0.1 --port "$PORT" --chain-id "$CHAIN_ID" --silent &
APID=$!
for _ in $(seq 1 250); do "$CAST" chain-id --rpc-url "$RPC" >/dev/null 2>&1 && break; sleep 0.02; done
expect_eq "$("$CAST" chain-id --rpc-url "$RPC")" "$CHAIN_ID" "anvil up on port $PORT, chain id $CHAIN_ID"

A0=$(addr $PK0); A1=$(addr $PK1); A2=$(addr $PK2); A3=$(addr $PK3); A4=$(addr $PK4)
now() { "$CAST" block latest --rpc-url "$RPC" -f timestamp; }

# ------------------------------------------------------------------ placement
section "place runtime bytecode at the canonical addresses (anvil_setCode) and initialise"
for pair in TestUSDC:$USDC TestObol:$OBOL Permit2:$PERMIT2 X402ExactPermit2Proxy:$PROXY X402UptoPermit2Proxy:$UPTO IdentityRegistry:$IDENTITY; do
  name=${pair%%:*}; at=${pair#*:}
  "$CAST" rpc --rpc-url "$RPC" anvil_setCode "$at" "$(artifact "$name" deployedBytecode)" >/dev/null
  code=$("$CAST" code --rpc-url "$RPC" "$at")
  expect_eq "$code" "$(artifact "$name" deployedBytecode)" "$name code at $at"
done
send $PK0 $USDC "initialize(address)" $A0 >/dev/null
send $PK0 $OBOL "initialize(address)" $A0 >/dev/null
expect_eq "$(call $USDC 'minter()(address)')" "$A0" "TestUSDC.initialize(minter) -> minter()"
expect_eq "$(call $OBOL 'minter()(address)')" "$A0" "TestObol.initialize(minter) -> minter()"
expect_revert "second initialize reverts AlreadyInitialized" "$(sel 'AlreadyInitialized()')" $USDC "initialize(address)" $A1 --from $A1
expect_revert "mint by non-minter reverts UnauthorizedMinter" "$(sel 'UnauthorizedMinter(address)')" $USDC "mint(address,uint256)" $A1 1 --from $A1

# ------------------------------------------------------------------ constants
section "domains and type hashes"
expect_eq "$(call $USDC 'DOMAIN_SEPARATOR()(bytes32)')" $USDC_DOMAIN_SEPARATOR "TestUSDC DOMAIN_SEPARATOR at $USDC on $CHAIN_ID"
expect_eq "$(call $PERMIT2 'DOMAIN_SEPARATOR()(bytes32)')" $PERMIT2_DOMAIN_SEPARATOR "Permit2 DOMAIN_SEPARATOR at $PERMIT2 on $CHAIN_ID"
expect_eq "$(call $USDC 'TRANSFER_WITH_AUTHORIZATION_TYPEHASH()(bytes32)')" 0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267 "TRANSFER_WITH_AUTHORIZATION_TYPEHASH"
expect_eq "$(call $USDC 'RECEIVE_WITH_AUTHORIZATION_TYPEHASH()(bytes32)')" 0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8 "RECEIVE_WITH_AUTHORIZATION_TYPEHASH"
expect_eq "$(call $USDC 'CANCEL_AUTHORIZATION_TYPEHASH()(bytes32)')" 0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429 "CANCEL_AUTHORIZATION_TYPEHASH"
expect_eq "$(call $USDC 'PERMIT_TYPEHASH()(bytes32)')" 0x6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9 "PERMIT_TYPEHASH"
expect_eq "$(call $PROXY 'WITNESS_TYPEHASH()(bytes32)')" 0xd97b3239a7f32295517bd14cb074edfdd188dfe5eb42f802bb26d4fd1eb12c37 "proxy WITNESS_TYPEHASH"
expect_eq "$(call $PROXY 'WITNESS_TYPE_STRING()(string)')" '"Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"' "proxy WITNESS_TYPE_STRING"
expect_eq "$(call $PROXY 'PERMIT2()(address)')" $PERMIT2 "proxy PERMIT2()"
expect_eq "$(call $UPTO 'WITNESS_TYPEHASH()(bytes32)')" 0xd4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75 "upto proxy WITNESS_TYPEHASH (its settle rules are tested in Rust: crates/devnet/tests/it/upto.rs)"
expect_eq "$(call $USDC 'name()(string)')/$(call $USDC 'symbol()(string)')/$(call $USDC 'decimals()(uint8)')/$(call $USDC 'version()(string)')" '"USDC"/"USDC"/6/"2"' "TestUSDC name/symbol/decimals/version"
expect_eq "$(call $OBOL 'name()(string)')/$(call $OBOL 'symbol()(string)')/$(call $OBOL 'decimals()(uint8)')" '"Obol Network"/"OBOL"/18' "TestObol name/symbol/decimals"
OBOL_DS=$("$CAST" keccak "$("$CAST" abi-encode 'f(bytes32,bytes32,bytes32,uint256,address)' \
  "$(topic 'EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)')" "$(topic 'Obol Network')" "$(topic 1)" $CHAIN_ID $OBOL)")
expect_eq "$(call $OBOL 'DOMAIN_SEPARATOR()(bytes32)')" "$OBOL_DS" "TestObol DOMAIN_SEPARATOR = EIP-712 {Obol Network, 1}"
expect_eq "$(call $OBOL 'eip712Domain()(bytes1,string,string,uint256,address,bytes32,uint256[])' | sed 's/ \[[0-9.e]*\]//' | tr '\n' ' ')" \
  "0x0f \"Obol Network\" \"1\" $CHAIN_ID $OBOL 0x0000000000000000000000000000000000000000000000000000000000000000 [] " "TestObol eip712Domain()"

# ------------------------------------------------------------------ EIP-3009
section "TestUSDC: EIP-3009 transferWithAuthorization"
send $PK0 $USDC "mint(address,uint256)" $A1 1000000000 >/dev/null # 1000 USDC
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $A1)" 1000000000 "minted 1000 USDC to payer"

auth_json() { # file from to value validAfter validBefore nonce [primaryType]
  cat >"$1" <<EOF
{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
 "${8:-TransferWithAuthorization}":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"value","type":"uint256"},{"name":"validAfter","type":"uint256"},{"name":"validBefore","type":"uint256"},{"name":"nonce","type":"bytes32"}]},
 "primaryType":"${8:-TransferWithAuthorization}",
 "domain":{"name":"USDC","version":"2","chainId":$CHAIN_ID,"verifyingContract":"$USDC"},
 "message":{"from":"$2","to":"$3","value":"$4","validAfter":"$5","validBefore":"$6","nonce":"$7"}}
EOF
}
TWA='transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)'
TWA_BYTES='transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)'
T=$(now); VA=$((T - 600)); VB=$((T + 3600)); N1=$(rand32)
auth_json "$WORK/a1.json" $A1 $A2 10000 $VA $VB $N1
SIG=$(sign_typed $PK1 "$WORK/a1.json"); split_sig "$SIG"
expect_eq "$(call $USDC 'authorizationState(address,bytes32)(bool)' $A1 $N1)" false "authorizationState false before use"
RCPT=$(send $PK0 $USDC "$TWA" $A1 $A2 10000 $VA $VB $N1 $V $R $S)
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $A2)" 10000 "facilitator-sent transferWithAuthorization (v,r,s) moved 0.01 USDC to payee"
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $A1)" 999990000 "payer debited"
has_log "$RCPT" "$(topic 'AuthorizationUsed(address,bytes32)')" $USDC && ok "AuthorizationUsed emitted" || fail "AuthorizationUsed missing"
expect_eq "$(call $USDC 'authorizationState(address,bytes32)(bool)' $A1 $N1)" true "authorizationState true after use"
expect_revert "replay (eth_call) reverts 'used or canceled'" "FiatTokenV2: authorization is used or canceled" $USDC "$TWA" $A1 $A2 10000 $VA $VB $N1 $V $R $S
expect_send_revert "replay (tx) reverts 'used or canceled'" "FiatTokenV2: authorization is used or canceled" $PK0 $USDC "$TWA" $A1 $A2 10000 $VA $VB $N1 $V $R $S

N2=$(rand32); auth_json "$WORK/a2.json" $A1 $A2 20000 $VA $VB $N2
SIG2=$(sign_typed $PK1 "$WORK/a2.json"); split_sig "$SIG2"
expect_revert "tampered value reverts 'invalid signature'" "FiatTokenV2: invalid signature" $USDC "$TWA" $A1 $A2 20001 $VA $VB $N2 $V $R $S
expect_revert "v=29 reverts ECRecover 'v' value" "ECRecover: invalid signature 'v' value" $USDC "$TWA" $A1 $A2 20000 $VA $VB $N2 29 $R $S
HS=$(node -e 'const n=0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141n; console.log("0x"+(n-BigInt(process.argv[1])).toString(16).padStart(64,"0"))' $S)
HV=$((V == 27 ? 28 : 27))
expect_revert "high-s twin signature reverts ECRecover 's' value" "ECRecover: invalid signature 's' value" $USDC "$TWA" $A1 $A2 20000 $VA $VB $N2 $HV $R $HS
send $PK0 $USDC "$TWA_BYTES" $A1 $A2 20000 $VA $VB $N2 "$SIG2" >/dev/null
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $A2)" 30000 "bytes-signature overload moved funds"

N3=$(rand32); auth_json "$WORK/a3.json" $A1 $A2 1 $((T + 3000)) $((T + 7200)) $N3
split_sig "$(sign_typed $PK1 "$WORK/a3.json")"
expect_revert "validAfter in the future reverts 'not yet valid'" "FiatTokenV2: authorization is not yet valid" $USDC "$TWA" $A1 $A2 1 $((T + 3000)) $((T + 7200)) $N3 $V $R $S
N4=$(rand32); auth_json "$WORK/a4.json" $A1 $A2 1 0 $((T - 1)) $N4
split_sig "$(sign_typed $PK1 "$WORK/a4.json")"
expect_revert "validBefore in the past reverts 'expired'" "FiatTokenV2: authorization is expired" $USDC "$TWA" $A1 $A2 1 0 $((T - 1)) $N4 $V $R $S
N5=$(rand32); auth_json "$WORK/a5.json" $A1 $A2 5000000000 $VA $VB $N5
split_sig "$(sign_typed $PK1 "$WORK/a5.json")"
expect_revert "value above balance reverts ERC20InsufficientBalance" "$(sel 'ERC20InsufficientBalance(address,uint256,uint256)')" $USDC "$TWA" $A1 $A2 5000000000 $VA $VB $N5 $V $R $S
N6=$(rand32); auth_json "$WORK/a6.json" $A1 $A2 7 $VA $VB $N6 ReceiveWithAuthorization
split_sig "$(sign_typed $PK1 "$WORK/a6.json")"
RWA='receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)'
expect_revert "receiveWithAuthorization from a non-payee reverts" "FiatTokenV2: caller must be the payee" $USDC "$RWA" $A1 $A2 7 $VA $VB $N6 $V $R $S --from $A0
send $PK2 $USDC "$RWA" $A1 $A2 7 $VA $VB $N6 $V $R $S >/dev/null
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $A2)" 30007 "receiveWithAuthorization by the payee"
N7=$(rand32)
cat >"$WORK/c.json" <<EOF
{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
 "CancelAuthorization":[{"name":"authorizer","type":"address"},{"name":"nonce","type":"bytes32"}]},
 "primaryType":"CancelAuthorization","domain":{"name":"USDC","version":"2","chainId":$CHAIN_ID,"verifyingContract":"$USDC"},
 "message":{"authorizer":"$A1","nonce":"$N7"}}
EOF
split_sig "$(sign_typed $PK1 "$WORK/c.json")"
RCPT=$(send $PK0 $USDC "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)" $A1 $N7 $V $R $S)
has_log "$RCPT" "$(topic 'AuthorizationCanceled(address,bytes32)')" $USDC && ok "cancelAuthorization emits AuthorizationCanceled" || fail "AuthorizationCanceled missing"
auth_json "$WORK/a7.json" $A1 $A2 1 $VA $VB $N7
split_sig "$(sign_typed $PK1 "$WORK/a7.json")"
expect_revert "canceled nonce reverts 'used or canceled'" "FiatTokenV2: authorization is used or canceled" $USDC "$TWA" $A1 $A2 1 $VA $VB $N7 $V $R $S

# ------------------------------------------------------------------ Permit2 + proxy
section "Permit2 + x402ExactPermit2Proxy: settle"
send $PK0 $OBOL "mint(address,uint256)" $A1 1000000000000000000000 >/dev/null # 1000 OBOL
send $PK0 $OBOL "mint(address,uint256)" $A3 1000000000000000000000 >/dev/null
send $PK1 $OBOL "approve(address,uint256)" $PERMIT2 $MAX >/dev/null
ok "payer approve(Permit2, max) on TestObol"

permit2_json() { # file token amount nonce deadline to validAfter
  cat >"$1" <<EOF
{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
 "PermitWitnessTransferFrom":[{"name":"permitted","type":"TokenPermissions"},{"name":"spender","type":"address"},{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"},{"name":"witness","type":"Witness"}],
 "TokenPermissions":[{"name":"token","type":"address"},{"name":"amount","type":"uint256"}],
 "Witness":[{"name":"to","type":"address"},{"name":"validAfter","type":"uint256"}]},
 "primaryType":"PermitWitnessTransferFrom",
 "domain":{"name":"Permit2","chainId":$CHAIN_ID,"verifyingContract":"$PERMIT2"},
 "message":{"permitted":{"token":"$2","amount":"$3"},"spender":"$PROXY","nonce":"$4","deadline":"$5","witness":{"to":"$6","validAfter":"$7"}}}
EOF
}
SETTLE='settle(((address,uint256),uint256,uint256),address,(address,uint256),bytes)'
SETTLE_WP='settleWithPermit((uint256,uint256,bytes32,bytes32,uint8),((address,uint256),uint256,uint256),address,(address,uint256),bytes)'
AMT=2500000000000000000 # 2.5 OBOL
T=$(now); DL=$((T + 600)); VA=$((T - 600)); PN=$(randuint)
permit2_json "$WORK/p1.json" $OBOL $AMT $PN $DL $A2 $VA
PSIG=$(sign_typed $PK1 "$WORK/p1.json")
RCPT=$(send $PK0 $PROXY "$SETTLE" "(($OBOL,$AMT),$PN,$DL)" $A1 "($A2,$VA)" "$PSIG")
expect_eq "$(callv $OBOL 'balanceOf(address)(uint256)' $A2)" $AMT "settle moved the permitted amount to witness.to"
has_log "$RCPT" "$(topic 'Settled()')" $PROXY && ok "Settled() emitted" || fail "Settled missing"
has_log "$RCPT" "$(topic 'Transfer(address,address,uint256)')" $OBOL && ok "token Transfer emitted by TestObol" || fail "Transfer missing"
WORD=$(node -e 'console.log((BigInt(process.argv[1])>>8n).toString())' $PN)
expect_eq "$(callv $PERMIT2 'nonceBitmap(address,uint256)(uint256)' $A1 $WORD)" \
  "$(node -e 'console.log((1n<<(BigInt(process.argv[1])&255n)).toString())' $PN)" "Permit2 nonceBitmap bit set"
expect_revert "replayed Permit2 nonce reverts InvalidNonce" "$(sel 'InvalidNonce()')" $PROXY "$SETTLE" "(($OBOL,$AMT),$PN,$DL)" $A1 "($A2,$VA)" "$PSIG"
expect_revert "witness.to redirected reverts InvalidSigner" "$(sel 'InvalidSigner()')" $PROXY "$SETTLE" "(($OBOL,$AMT),$(randuint),$DL)" $A1 "($A0,$VA)" "$PSIG"

PN2=$(randuint); permit2_json "$WORK/p2.json" $OBOL 1000 $PN2 $DL $A2 $VA
split_sig "$(sign_typed $PK1 "$WORK/p2.json")"
COMPACT=$(node -e 'const [r,s,v]=process.argv.slice(1); const vs=(BigInt(s)|(BigInt(v)-27n)<<255n).toString(16).padStart(64,"0"); console.log(r+vs)' $R $S $V)
send $PK0 $PROXY "$SETTLE" "(($OBOL,1000),$PN2,$DL)" $A1 "($A2,$VA)" "$COMPACT" >/dev/null
expect_eq "$(callv $OBOL 'balanceOf(address)(uint256)' $A2)" $((AMT + 1000)) "settle with a 64-byte EIP-2098 signature"

PN3=$(randuint); permit2_json "$WORK/p3.json" $OBOL 0 $PN3 $DL $A2 $VA; S3=$(sign_typed $PK1 "$WORK/p3.json")
expect_revert "amount 0 reverts InvalidAmount()" "$(sel 'InvalidAmount()')" $PROXY "$SETTLE" "(($OBOL,0),$PN3,$DL)" $A1 "($A2,$VA)" "$S3"
expect_revert "owner 0 reverts InvalidOwner()" "$(sel 'InvalidOwner()')" $PROXY "$SETTLE" "(($OBOL,1),$PN3,$DL)" 0x0000000000000000000000000000000000000000 "($A2,$VA)" "$S3"
expect_revert "witness.to 0 reverts InvalidDestination()" "$(sel 'InvalidDestination()')" $PROXY "$SETTLE" "(($OBOL,1),$PN3,$DL)" $A1 "(0x0000000000000000000000000000000000000000,$VA)" "$S3"
PN4=$(randuint); permit2_json "$WORK/p4.json" $OBOL 1 $PN4 $DL $A2 $((T + 300)); S4=$(sign_typed $PK1 "$WORK/p4.json")
expect_revert "validAfter in the future reverts PaymentTooEarly()" "$(sel 'PaymentTooEarly()')" $PROXY "$SETTLE" "(($OBOL,1),$PN4,$DL)" $A1 "($A2,$((T + 300)))" "$S4"
PN5=$(randuint); permit2_json "$WORK/p5.json" $OBOL 1 $PN5 $((T - 1)) $A2 $VA; S5=$(sign_typed $PK1 "$WORK/p5.json")
expect_revert "expired deadline reverts SignatureExpired" "$(sel 'SignatureExpired(uint256)')" $PROXY "$SETTLE" "(($OBOL,1),$PN5,$((T - 1)))" $A1 "($A2,$VA)" "$S5"
PN6=$(randuint); permit2_json "$WORK/p6.json" $OBOL 1 $PN6 $DL $A2 $VA; S6=$(sign_typed $PK3 "$WORK/p6.json")
expect_revert "no Permit2 allowance reverts TRANSFER_FROM_FAILED" "TRANSFER_FROM_FAILED" $PROXY "$SETTLE" "(($OBOL,1),$PN6,$DL)" $A3 "($A2,$VA)" "$S6"

section "x402ExactPermit2Proxy: settleWithPermit (EIP-2612, no prior approval)"
expect_eq "$(callv $OBOL 'allowance(address,address)(uint256)' $A3 $PERMIT2)" 0 "second payer has no Permit2 allowance"
eip2612_json() { # file owner value nonce deadline
  cat >"$1" <<EOF
{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
 "Permit":[{"name":"owner","type":"address"},{"name":"spender","type":"address"},{"name":"value","type":"uint256"},{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"}]},
 "primaryType":"Permit","domain":{"name":"Obol Network","version":"1","chainId":$CHAIN_ID,"verifyingContract":"$OBOL"},
 "message":{"owner":"$2","spender":"$PERMIT2","value":"$3","nonce":"$4","deadline":"$5"}}
EOF
}
AMT2=1500000000000000000 # 1.5 OBOL
eip2612_json "$WORK/e1.json" $A3 $AMT2 "$(callv $OBOL 'nonces(address)(uint256)' $A3)" $DL
split_sig "$(sign_typed $PK3 "$WORK/e1.json")"; ER=$R; ES=$S; EV=$V
PN7=$(randuint); permit2_json "$WORK/p7.json" $OBOL $AMT2 $PN7 $DL $A2 $VA; S7=$(sign_typed $PK3 "$WORK/p7.json")
expect_revert "permit2612.value != amount reverts Permit2612AmountMismatch()" "$(sel 'Permit2612AmountMismatch()')" \
  $PROXY "$SETTLE_WP" "($MAX,$DL,$ER,$ES,$EV)" "(($OBOL,$AMT2),$PN7,$DL)" $A3 "($A2,$VA)" "$S7"
BAL2=$(callv $OBOL 'balanceOf(address)(uint256)' $A2)
RCPT=$(send $PK0 $PROXY "$SETTLE_WP" "($AMT2,$DL,$ER,$ES,$EV)" "(($OBOL,$AMT2),$PN7,$DL)" $A3 "($A2,$VA)" "$S7")
expect_eq "$(callv $OBOL 'balanceOf(address)(uint256)' $A2)" "$(node -e 'console.log((BigInt(process.argv[1])+BigInt(process.argv[2])).toString())' $BAL2 $AMT2)" "settleWithPermit moved exactly the permitted amount"
has_log "$RCPT" "$(topic 'SettledWithPermit()')" $PROXY && ok "SettledWithPermit() emitted" || fail "SettledWithPermit missing"
has_log "$RCPT" "$(topic 'Approval(address,address,uint256)')" $OBOL && ok "EIP-2612 permit applied (Approval emitted)" || fail "Approval missing"
expect_eq "$(count_logs "$RCPT" "$(topic 'EIP2612PermitFailedWithData(address,address,bytes)')")" 0 "no EIP2612PermitFailed* event"
expect_eq "$(callv $OBOL 'allowance(address,address)(uint256)' $A3 $PERMIT2)" 0 "allowance fully consumed"
expect_eq "$(callv $OBOL 'nonces(address)(uint256)' $A3)" 1 "TestObol nonces(owner) advanced"

# second settleWithPermit re-using the spent EIP-2612 signature: the permit fails, the proxy reports
# it and goes on with the allowance that a plain approve() granted in between.
send $PK3 $OBOL "approve(address,uint256)" $PERMIT2 $AMT2 >/dev/null
PN8=$(randuint); permit2_json "$WORK/p8.json" $OBOL $AMT2 $PN8 $DL $A2 $VA; S8=$(sign_typed $PK3 "$WORK/p8.json")
RCPT=$(send $PK0 $PROXY "$SETTLE_WP" "($AMT2,$DL,$ER,$ES,$EV)" "(($OBOL,$AMT2),$PN8,$DL)" $A3 "($A2,$VA)" "$S8")
expect_eq "$(count_logs "$RCPT" "$(topic 'EIP2612PermitFailedWithData(address,address,bytes)')")" 1 "failing permit emits EIP2612PermitFailedWithData and settlement continues"
has_log "$RCPT" "$(topic 'SettledWithPermit()')" $PROXY && ok "SettledWithPermit() after a failed permit" || fail "SettledWithPermit missing"

# ------------------------------------------------------------------ ERC-8004
section "IdentityRegistry (ERC-8004)"
URI='data:application/json;base64,eyJuYW1lIjoic21va2UifQ=='
RCPT=$(send $PK2 $IDENTITY "register(string)" "$URI")
expect_eq "$(topic 'Registered(uint256,string,address)')" 0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a "Registered topic0"
has_log "$RCPT" 0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a $IDENTITY && ok "register(string) emits Registered" || fail "Registered missing"
ORDER=$(node -e 'const r=JSON.parse(process.argv[1]); console.log(r.logs.map(l=>l.topics[0].slice(0,10)).join(","))' "$RCPT")
expect_eq "$ORDER" "0xddf252ad,0xf8e1a15a,0xca52e62c,0x2c149ed5" "log order Transfer, MetadataUpdate, Registered, MetadataSet(agentWallet)"
expect_eq "$(call $IDENTITY 'ownerOf(uint256)(address)' 0)" $A2 "agentId 0 owned by the caller"
expect_eq "$(call $IDENTITY 'tokenURI(uint256)(string)' 0)" "\"$URI\"" "tokenURI = agentURI"
expect_eq "$(call $IDENTITY 'getAgentWallet(uint256)(address)' 0)" $A2 "agentWallet defaults to the owner"
expect_eq "$(call $IDENTITY 'getMetadata(uint256,string)(bytes)' 0 agentWallet)" "$(echo $A2 | tr 'A-F' 'a-f')" "getMetadata(agentWallet) = 20 raw bytes"
expect_eq "$(call $IDENTITY 'name()(string)')/$(call $IDENTITY 'symbol()(string)')/$(call $IDENTITY 'getVersion()(string)')" '"AgentIdentity"/"AGENT"/"2.0.0"' "name/symbol/getVersion"
expect_revert "setMetadata(agentWallet) reverts 'reserved key'" "reserved key" $IDENTITY "setMetadata(uint256,string,bytes)" 0 agentWallet 0x01 --from $A2
expect_revert "setMetadata by a stranger reverts 'Not authorized'" "Not authorized" $IDENTITY "setMetadata(uint256,string,bytes)" 0 k 0x01 --from $A1
RCPT=$(send $PK2 $IDENTITY "setMetadata(uint256,string,bytes)" 0 price 0x1234)
has_log "$RCPT" 0x2c149ed548c6d2993cd73efe187df6eccabe4538091b33adbd25fafdb8a1468b $IDENTITY && ok "setMetadata emits MetadataSet" || fail "MetadataSet missing"
expect_eq "$(call $IDENTITY 'getMetadata(uint256,string)(bytes)' 0 price)" 0x1234 "getMetadata round-trip"
RCPT=$(send $PK2 $IDENTITY "setAgentURI(uint256,string)" 0 "ipfs://new")
has_log "$RCPT" 0x3a2c7fffc2cba7582c690e3b82c453ea02a308326a98a3ad7576c606336409fb $IDENTITY && ok "setAgentURI emits URIUpdated" || fail "URIUpdated missing"
T=$(now); WDL=$((T + 120))
cat >"$WORK/w.json" <<EOF
{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
 "AgentWalletSet":[{"name":"agentId","type":"uint256"},{"name":"newWallet","type":"address"},{"name":"owner","type":"address"},{"name":"deadline","type":"uint256"}]},
 "primaryType":"AgentWalletSet","domain":{"name":"ERC8004IdentityRegistry","version":"1","chainId":$CHAIN_ID,"verifyingContract":"$IDENTITY"},
 "message":{"agentId":"0","newWallet":"$A4","owner":"$A2","deadline":"$WDL"}}
EOF
WSIG=$(sign_typed $PK4 "$WORK/w.json")
expect_revert "setAgentWallet signed by the wrong key reverts 'invalid wallet sig'" "invalid wallet sig" $IDENTITY "setAgentWallet(uint256,address,uint256,bytes)" 0 $A4 $WDL "$(sign_typed $PK2 "$WORK/w.json")" --from $A2
expect_revert "setAgentWallet deadline > now+5min reverts 'deadline too far'" "deadline too far" $IDENTITY "setAgentWallet(uint256,address,uint256,bytes)" 0 $A4 $((T + 3600)) "$WSIG" --from $A2
send $PK2 $IDENTITY "setAgentWallet(uint256,address,uint256,bytes)" 0 $A4 $WDL "$WSIG" >/dev/null
expect_eq "$(call $IDENTITY 'getAgentWallet(uint256)(address)' 0)" $A4 "setAgentWallet with the new wallet's EIP-712 signature"
RCPT=$(send $PK2 $IDENTITY "transferFrom(address,address,uint256)" $A2 $A1 0)
expect_eq "$(call $IDENTITY 'getAgentWallet(uint256)(address)' 0)" 0x0000000000000000000000000000000000000000 "transfer clears agentWallet"
expect_eq "$(call $IDENTITY 'isAuthorizedOrOwner(address,uint256)(bool)' $A1 0)" true "isAuthorizedOrOwner(new owner)"
send $PK0 $IDENTITY "register()" >/dev/null
expect_eq "$(call $IDENTITY 'ownerOf(uint256)(address)' 1)" $A0 "register() mints agentId 1"

# ------------------------------------------------------------------ ERC-1271
section "ERC-1271 owners (hand-written wallets placed with anvil_setCode)"
# YES answers every call with 0x1626ba7e (isValidSignature's magic value), NO with 32 zero bytes.
YES=0x00000000000000000000000000000000000012a1
NO=0x00000000000000000000000000000000000012a0
"$CAST" rpc --rpc-url "$RPC" anvil_setCode $YES 0x631626ba7e60e01b60005260206000f3 >/dev/null
"$CAST" rpc --rpc-url "$RPC" anvil_setCode $NO 0x60206000f3 >/dev/null
send $PK0 $USDC "mint(address,uint256)" $YES 1000 >/dev/null
send $PK0 $USDC "mint(address,uint256)" $NO 1000 >/dev/null
T=$(now); NC=$(rand32)
send $PK0 $USDC "$TWA_BYTES" $YES $A2 300 0 $((T + 600)) $NC 0xc0ffee >/dev/null
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $YES)" 700 "TestUSDC transferWithAuthorization(bytes) from an ERC-1271 wallet"
expect_revert "ERC-1271 wallet answering 0 reverts 'invalid signature'" "FiatTokenV2: invalid signature" $USDC "$TWA_BYTES" $NO $A2 300 0 $((T + 600)) $NC 0xc0ffee
"$CAST" rpc --rpc-url "$RPC" anvil_setBalance $YES 0xde0b6b3a7640000 >/dev/null
"$CAST" rpc --rpc-url "$RPC" anvil_impersonateAccount $YES >/dev/null
"$CAST" send --rpc-url "$RPC" --unlocked --from $YES $USDC "approve(address,uint256)" $PERMIT2 $MAX >/dev/null
"$CAST" rpc --rpc-url "$RPC" anvil_stopImpersonatingAccount $YES >/dev/null
PNC=$(randuint); T=$(now)
RCPT=$(send $PK0 $PROXY "$SETTLE" "(($USDC,200),$PNC,$((T + 600)))" $YES "($A2,0)" 0xc0ffee)
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $YES)" 500 "Permit2 witness transfer (proxy settle) for an ERC-1271 owner"
expect_revert "Permit2 with a rejecting ERC-1271 owner reverts InvalidContractSignature" "$(sel 'InvalidContractSignature()')" $PROXY "$SETTLE" "(($USDC,200),$PNC,$((T + 600)))" $NO "($A2,0)" 0xc0ffee
# EIP2612PermitFailedWithReason: an expired permit makes TestUSDC revert with a string ("FiatTokenV2: permit
# is expired"); the Permit2 approval exists anyway, so settlement goes on.
PNR=$(randuint)
RCPT=$(send $PK0 $PROXY "$SETTLE_WP" "(100,1,$(rand32),$(rand32),27)" "(($USDC,100),$PNR,$((T + 600)))" $YES "($A2,0)" 0xc0ffee)
expect_eq "$(count_logs "$RCPT" "$(topic 'EIP2612PermitFailedWithReason(address,address,string)')")" 1 "string revert from permit() emits EIP2612PermitFailedWithReason"
expect_eq "$(callv $USDC 'balanceOf(address)(uint256)' $YES)" 400 "  ... and settleWithPermit still settles"
T=$(now)
send $PK1 $IDENTITY "setAgentWallet(uint256,address,uint256,bytes)" 0 $YES $((T + 60)) 0x$(printf '11%.0s' $(seq 1 65)) >/dev/null
expect_eq "$(call $IDENTITY 'getAgentWallet(uint256)(address)' 0)" $YES "IdentityRegistry setAgentWallet falls back to ERC-1271"
expect_revert "IdentityRegistry rejecting ERC-1271 wallet reverts 'invalid wallet sig'" "invalid wallet sig" $IDENTITY "setAgentWallet(uint256,address,uint256,bytes)" 0 $NO $((T + 60)) 0xc0ffee --from $A1

# ------------------------------------------------------------------ plain deployments
section "plain deployment (constructor-less create + initialize)"
for name in TestUSDC TestObol Permit2 X402ExactPermit2Proxy X402UptoPermit2Proxy IdentityRegistry; do
  RCPT=$(send $PK0 --create "$(artifact $name bytecode)")
  AT=$(node -e 'console.log(JSON.parse(process.argv[1]).contractAddress)' "$RCPT")
  expect_eq "$("$CAST" code --rpc-url "$RPC" "$AT")" "$(artifact $name deployedBytecode)" "$name deployed at $AT, runtime code = deployedBytecode"
  case $name in
    TestUSDC)
      send $PK0 $AT "initialize(address)" $A0 >/dev/null
      send $PK0 $AT "mint(address,uint256)" $A1 100 >/dev/null
      T=$(now); NX=$(rand32)
      cat >"$WORK/d.json" <<EOF
{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
 "TransferWithAuthorization":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"value","type":"uint256"},{"name":"validAfter","type":"uint256"},{"name":"validBefore","type":"uint256"},{"name":"nonce","type":"bytes32"}]},
 "primaryType":"TransferWithAuthorization","domain":{"name":"USDC","version":"2","chainId":$CHAIN_ID,"verifyingContract":"$AT"},
 "message":{"from":"$A1","to":"$A2","value":"40","validAfter":"0","validBefore":"$((T + 600))","nonce":"$NX"}}
EOF
      split_sig "$(sign_typed $PK1 "$WORK/d.json")"
      send $PK0 $AT "$TWA" $A1 $A2 40 0 $((T + 600)) $NX $V $R $S >/dev/null
      expect_eq "$(callv $AT 'balanceOf(address)(uint256)' $A2)" 40 "  fresh TestUSDC: initialize + mint + transferWithAuthorization under its own domain"
      ;;
    TestObol)
      send $PK0 $AT "initialize(address)" $A0 >/dev/null
      send $PK0 $AT "mint(address,uint256)" $A1 5 >/dev/null
      expect_eq "$(callv $AT 'balanceOf(address)(uint256)' $A1)" 5 "  fresh TestObol: initialize + mint"
      ;;
    Permit2)
      DS=$("$CAST" keccak "$("$CAST" abi-encode 'f(bytes32,bytes32,uint256,address)' \
        "$(topic 'EIP712Domain(string name,uint256 chainId,address verifyingContract)')" "$(topic Permit2)" $CHAIN_ID $AT)")
      expect_eq "$(call $AT 'DOMAIN_SEPARATOR()(bytes32)')" "$DS" "  fresh Permit2: DOMAIN_SEPARATOR follows its address"
      ;;
    X402ExactPermit2Proxy|X402UptoPermit2Proxy)
      expect_eq "$(call $AT 'PERMIT2()(address)')" $PERMIT2 "  fresh $name: PERMIT2() is the canonical Permit2"
      ;;
    IdentityRegistry)
      send $PK1 $AT "register(string)" "ipfs://x" >/dev/null
      expect_eq "$(call $AT 'ownerOf(uint256)(address)' 0)" $A1 "  fresh IdentityRegistry: register(string) -> agentId 0"
      ;;
  esac
done

echo "PASS: $PASS checks"
