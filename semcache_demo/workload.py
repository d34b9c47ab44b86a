"""A realistic customer-support workload for demos, tests and notebooks.

Forty support intents of "Acme Cloud", a fictional SaaS and e-commerce company. Each intent
has one canonical question, three or four paraphrases worded the way customers actually type
them, and the answer a support agent would give. Several intents are deliberately near each
other (cancel vs pause a subscription, change email vs change password, refund status vs
request a refund, add vs remove a team member, download an invoice vs update the billing
address, delete vs deactivate an account): a cache that serves one for the other is wrong,
and those pairs keep the demo honest.

The wording was calibrated against all-MiniLM-L6-v2 (cosine similarity of normalized
embeddings). No two questions of different intents reach 0.82; the hard-negative pairs sit
between 0.70 and 0.82. Of the 124 paraphrases, 90 (73%) reach at least 0.856 against an
earlier question of their own intent; the other 34 stay at or below 0.84, spread down to
about 0.25, like the real rewordings a semantic cache rightly misses. So at a threshold of
0.85 a cache serves 90 correct hits and no wrong answer, while at 0.80 it starts answering
"How do I delete my account?" with the deactivation answer (or the other way round).

This module is pure data and pure functions; it imports only the standard library.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "INTENTS",
    "MODEL_PRICES",
    "Intent",
    "WorkloadItem",
    "answer_for",
    "intent_of",
    "replay",
]


MODEL_PRICES: dict[str, tuple[float, float]] = {
    "support-small": (0.15, 0.60),
    "support-large": (2.50, 10.00),
}
"""Illustrative prices of the demo's two fake models, USD per million (input, output)
tokens (in the range of small and large hosted LLMs). The demo passes them to the engine
(``CacheEngine(prices=MODEL_PRICES)``), so the persisted totals and ``semcache stats``
count the money its hits saved, as its own report does."""


@dataclass(frozen=True)
class Intent:
    """One support intent: what customers ask, in several wordings, and the answer."""

    id: str
    """Unique snake_case identifier."""
    answer: str
    """The answer a support agent gives, two to four sentences."""
    questions: tuple[str, ...]
    """``questions[0]`` is the canonical question; the rest are paraphrases."""


@dataclass(frozen=True)
class WorkloadItem:
    """One question in a replayed stream."""

    intent_id: str
    question: str
    is_first_ask: bool
    """True for the first question of the intent in this stream."""


INTENTS: tuple[Intent, ...] = (
    # --- account and sign-in ---------------------------------------------------------------
    Intent(
        id="reset_password",
        answer=(
            'Click "Forgot password?" on the Acme Cloud sign-in page and enter the email '
            "address on your account. We email you a reset link that is valid for 60 minutes. "
            "If it does not arrive, check your spam folder or ask a workspace admin to send a "
            "reset from Settings > Members."
        ),
        questions=(
            "How do I reset my password?",
            "I forgot my password, how do I reset it?",
            "password reset steps please",
            "Where do I go to reset my password?",
            "Can't log in - how can I get a new password?",
        ),
    ),
    Intent(
        id="change_password",
        answer=(
            "While signed in, go to Settings > Security and click Change password. Enter your "
            "current password once and the new one twice; it must be at least 12 characters. "
            "All your other sessions are signed out when the change is saved."
        ),
        questions=(
            "Where in settings can I change my password?",
            "I want to change my password, where's the option?",
            "I know my password but want to change it, how?",
            "How can I change my password in settings?",
        ),
    ),
    Intent(
        id="change_email",
        answer=(
            "Go to Settings > Profile, click Edit next to your email address and enter the new "
            "one. We send a confirmation link to the new address, and the change takes effect "
            "once you click it. Your password, data and billing stay the same."
        ),
        questions=(
            "How do I change the email address on my account?",
            "Can I change the email address I use for my account?",
            "I want to change my email, where's the option?",
            "I want to use a different email address for my account, how do I change it?",
            "We changed domains at work - how do I move my account to the new email address?",
        ),
    ),
    Intent(
        id="enable_two_factor",
        answer=(
            "Go to Settings > Security and click Enable two-factor authentication. Scan the QR "
            "code with an authenticator app such as Google Authenticator or 1Password, then "
            "enter the 6-digit code to confirm. Keep the backup codes somewhere safe; they are "
            "the only way in if you lose your phone."
        ),
        questions=(
            "How do I turn on two-factor authentication?",
            "How can I set up two-factor authentication on my account?",
            "set up two factor auth",
            "Where do I switch on two-factor authentication?",
        ),
    ),
    Intent(
        id="delete_account",
        answer=(
            "Go to Settings > Account > Delete account and confirm with your password. Deletion "
            "is permanent: your files, workspaces and billing history are erased within 30 days "
            "and cannot be recovered. If you are on a paid plan, cancel the subscription first "
            "so you are not billed again."
        ),
        questions=(
            "How do I delete my account?",
            "I'd like to delete my account, how do I do it?",
            "Please erase everything you have about me, I'm done with Acme.",
            "what are the steps to delete my account",
        ),
    ),
    Intent(
        id="deactivate_account",
        answer=(
            "Go to Settings > Account > Deactivate account. Deactivation hides your profile and "
            "signs you out everywhere but keeps all your data; sign in again to reactivate. If "
            "you want your data erased for good, use Delete account instead."
        ),
        questions=(
            "How do I deactivate my account?",
            "Is there a way to deactivate my account without deleting it?",
            "Can I temporarily disable my account?",
            "I want to temporarily deactivate my account.",
        ),
    ),
    Intent(
        id="transfer_ownership",
        answer=(
            "Only the current owner can do this: go to Settings > Members, open the menu next "
            "to the new owner and choose Transfer ownership. The new owner must already be a "
            "member with a verified email. After the transfer you stay in the workspace as an "
            "admin unless you remove yourself."
        ),
        questions=(
            "How do I transfer ownership of the workspace?",
            "Can I make someone else the owner of our workspace?",
            "I need to transfer ownership of our workspace to a colleague.",
            "transfer workspace ownership",
        ),
    ),
    # --- team ------------------------------------------------------------------------------
    Intent(
        id="add_team_member",
        answer=(
            "Go to Settings > Members, click Invite member, enter their email address and "
            "choose a role. They get an invitation email that is valid for 7 days. On paid "
            "plans each new member adds a seat, billed prorated for the current period."
        ),
        questions=(
            "How do I add a team member?",
            "How can I add a new member to my team?",
            "A new person joined our team, how do I give them access?",
            "add team member",
        ),
    ),
    Intent(
        id="remove_team_member",
        answer=(
            "Go to Settings > Members, click the menu next to the person and choose Remove from "
            "workspace. They lose access immediately and the files they own are transferred to "
            "you. The freed seat is credited on your next invoice."
        ),
        questions=(
            "How do I remove a team member?",
            "I need to remove a member from my team.",
            "Someone left the company, how do I take away their access?",
            "How can I remove someone from my team?",
        ),
    ),
    Intent(
        id="sso_setup",
        answer=(
            "Single sign-on with SAML 2.0 or OIDC is available on the Business plan. Go to "
            "Settings > Security > Single sign-on, choose your identity provider (Okta, Azure "
            "AD, Google Workspace and others) and follow the guided setup. Once SSO works you "
            "can make it mandatory for all members."
        ),
        questions=(
            "How do I set up single sign-on?",
            "How do we set up single sign-on for our company?",
            "How can we configure SSO with Okta?",
            "Is single sign-on available and how do I set it up?",
        ),
    ),
    # --- subscription and plans ------------------------------------------------------------
    Intent(
        id="cancel_subscription",
        answer=(
            "Go to Settings > Billing and click Cancel subscription. Your plan stays active "
            "until the end of the current billing period and you will not be charged again. "
            "Your data is kept for 30 days after that in case you change your mind."
        ),
        questions=(
            "How do I cancel my subscription?",
            "Hi, I'd like to cancel my subscription. How do I do that?",
            "How can I stop being charged every month? I don't want the service anymore.",
            "what's the easiest way to cancel my subscription",
        ),
    ),
    Intent(
        id="pause_subscription",
        answer=(
            "Yes. Go to Settings > Billing and choose Pause subscription; you can pause for 1 "
            "to 3 months once a year. While paused you are not billed, your data is kept and "
            "your workspace is read-only. Billing resumes automatically at the end of the "
            "pause, or earlier if you click Resume."
        ),
        questions=(
            "Can I pause my subscription?",
            "I'd like to pause my subscription for a while.",
            "Is it possible to put my subscription on hold for a few months?",
            "How do I pause my subscription for a few months?",
            "I don't need the service over the summer but don't want to cancel - can I freeze my "
            "account?",
        ),
    ),
    Intent(
        id="upgrade_plan",
        answer=(
            "Go to Settings > Billing > Change plan and pick the plan you want. Upgrades take "
            "effect immediately and you pay a prorated amount for the rest of the current "
            "billing period. All your data and settings carry over."
        ),
        questions=(
            "How do I upgrade my plan?",
            "What's the process to upgrade my plan?",
            "We need more seats and features - how do we switch to the Business plan?",
            "Where do I go to upgrade my plan?",
        ),
    ),
    Intent(
        id="downgrade_plan",
        answer=(
            "Go to Settings > Billing > Change plan and choose the smaller plan. Downgrades take "
            "effect at the start of your next billing period, so you keep your current features "
            "until then. If you are over the new plan's seat or storage limits, we ask you to "
            "reduce usage first."
        ),
        questions=(
            "How do I downgrade my plan?",
            "I want to downgrade to a cheaper plan.",
            "How do I downgrade to the Basic plan?",
            "Where do I go to downgrade my plan?",
        ),
    ),
    Intent(
        id="free_trial",
        answer=(
            "Yes, every new workspace gets a 14-day free trial of the Pro plan, and no credit "
            "card is needed to start. At the end of the trial you pick a paid plan or stay on "
            "the Free plan; nothing is charged automatically. Your data is kept either way."
        ),
        questions=(
            "Do you offer a free trial?",
            "do you guys have a free trial?",
            "Can I try Acme Cloud for free before paying?",
            "Is a free trial available?",
        ),
    ),
    Intent(
        id="discounts",
        answer=(
            "Yes: registered nonprofits get 50% off any paid plan, and students and teachers get "
            "Pro free with a school email address. Apply from Settings > Billing > Discounts and "
            "upload proof of eligibility. We review applications within 3 business days."
        ),
        questions=(
            "Do you offer discounts for nonprofits or students?",
            "Do you have any discounts for students or non-profits?",
            "I'm a teacher, can I get Acme Cloud cheaper for my class?",
            "Is there a student or nonprofit discount?",
        ),
    ),
    Intent(
        id="storage_limits",
        answer=(
            "The Free plan includes 5 GB, Pro 1 TB per user, and Business 5 TB per user pooled "
            "across the workspace. You can see your current usage under Settings > Storage. If "
            "you need more, add 1 TB storage packs without changing plan."
        ),
        questions=(
            "How much storage do I get?",
            "How much storage space do I have?",
            "How much storage comes with my plan?",
            "How much storage space is included?",
        ),
    ),
    # --- billing ---------------------------------------------------------------------------
    Intent(
        id="request_refund",
        answer=(
            "You can request a refund within 30 days of a charge: go to Settings > Billing > "
            "Payment history, click the charge and choose Request refund. For store orders, "
            "open the order and choose Return or refund. Our billing team reviews every request "
            "within 2 business days."
        ),
        questions=(
            "How do I request a refund?",
            "How do I ask for a refund?",
            "I was charged for a year by mistake, can I get a refund?",
            "I want to request a refund.",
        ),
    ),
    Intent(
        id="refund_status",
        answer=(
            "Approved refunds are sent to your original payment method within 1 business day, "
            "but banks usually take 5 to 10 business days to show them on your statement. You "
            "can see the status and the refund reference under Settings > Billing > Payment "
            "history. If it has been more than 10 business days, contact support with that "
            "reference."
        ),
        questions=(
            "What is the status of my refund?",
            "Can you check on the status of my refund?",
            "When will I get my refund?",
            "refund status",
        ),
    ),
    Intent(
        id="download_invoice",
        answer=(
            "All invoices are under Settings > Billing > Invoices, where you can download each "
            "one as a PDF. They are also emailed to the billing contact every time you are "
            "charged. For store orders, open the order in Your orders and click Download "
            "invoice."
        ),
        questions=(
            "How do I download my invoice?",
            "Where can I download my invoice?",
            "Our accounting team wants copies of past invoices - where do I get them?",
            "How do I download the invoice for my billing period?",
        ),
    ),
    Intent(
        id="update_billing_address",
        answer=(
            "Go to Settings > Billing > Billing details and edit the address. The new address "
            "appears on all future invoices; past invoices can't be changed, but support can "
            "reissue one from the last 90 days. Your billing address does not affect where "
            "orders are shipped."
        ),
        questions=(
            "How do I update my billing address?",
            "I need to change my billing address.",
            "Our company moved offices, where do I edit the address we're billed at?",
            "I need to change the billing address on my invoice.",
        ),
    ),
    Intent(
        id="update_payment_method",
        answer=(
            "Go to Settings > Billing > Payment method and click Replace card. The new card is "
            "used for your next charge and the old one is removed once it is saved. If a "
            "payment failed because the card expired, we retry within 24 hours of the update."
        ),
        questions=(
            "How do I update my credit card?",
            "I need to update my credit card.",
            "I need to change my payment method.",
            "My credit card expired, how do I update it?",
        ),
    ),
    Intent(
        id="accepted_payment_methods",
        answer=(
            "We accept Visa, Mastercard, American Express, Discover and PayPal. Business "
            "customers on annual plans can also pay by bank transfer against an invoice. We do "
            "not accept cryptocurrency or checks."
        ),
        questions=(
            "What payment methods do you accept?",
            "Which payment methods are accepted?",
            "What payment methods can I use?",
            "accepted payment methods",
        ),
    ),
    Intent(
        id="vat_tax_id",
        answer=(
            "Go to Settings > Billing > Billing details and enter your VAT or tax ID in the Tax "
            "ID field. Once it is validated, EU business customers are billed under the "
            "reverse-charge mechanism and no VAT is added. The ID appears on every invoice "
            "issued after you save it."
        ),
        questions=(
            "How do I add my VAT number to invoices?",
            "Can you put our VAT number on the invoices?",
            "Where do I enter our company tax ID?",
            "Where do I enter my VAT number for invoices?",
        ),
    ),
    Intent(
        id="promo_code",
        answer=(
            "Promo codes are case-sensitive, valid only until the date in the offer, and "
            "usually can't be combined with other discounts or used on sale items. Check for "
            "extra spaces when pasting the code. If it still fails, send us the code and a "
            "screenshot through chat and we will apply the discount manually."
        ),
        questions=(
            "My promo code isn't working.",
            "Why isn't my promo code working?",
            "The promo code won't work at checkout.",
            "I have a promo code but it doesn't work",
        ),
    ),
    # --- store orders ----------------------------------------------------------------------
    Intent(
        id="track_order",
        answer=(
            "Open Your orders and click Track package next to the order to see the carrier and "
            "live tracking status. We also email you the tracking number as soon as the order "
            "ships. Tracking can take up to 24 hours to update after the label is created."
        ),
        questions=(
            "How do I track my order?",
            "Is there a way to track my order?",
            "Where is my package?",
            "Can I track my order online?",
            "Where can I track my order?",
        ),
    ),
    Intent(
        id="cancel_order",
        answer=(
            "You can cancel an order from Your orders as long as it hasn't shipped: click "
            "Cancel order and you are refunded in full. Once an order has shipped it can't be "
            "cancelled, but you can return it for free within 30 days."
        ),
        questions=(
            "How do I cancel my order?",
            "Can I still cancel my order?",
            "How do I cancel an order I just placed?",
            "I want to cancel my order.",
        ),
    ),
    Intent(
        id="change_shipping_address",
        answer=(
            "If the order hasn't shipped yet, open it in Your orders and click Edit shipping "
            "address. After it ships we can't change the address ourselves, but you can use the "
            "carrier's redirect link in your tracking email. To change your default address for "
            "future orders, go to Settings > Addresses."
        ),
        questions=(
            "How do I change the shipping address on my order?",
            "I put the wrong shipping address on my order, can I change it?",
            "I just moved, can you send my package to my new address instead?",
            "Can I change the delivery address of my order?",
        ),
    ),
    Intent(
        id="shipping_times",
        answer=(
            "Standard shipping takes 3 to 5 business days and express shipping 1 to 2 business "
            "days within the continental US. Orders placed before 2 pm Eastern ship the same "
            "day. You see an exact delivery estimate at checkout."
        ),
        questions=(
            "How long does shipping take?",
            "How many days does shipping take?",
            "If I order today, how many days until it gets to me?",
            "how long is shipping",
        ),
    ),
    Intent(
        id="international_shipping",
        answer=(
            "Yes, we ship to over 40 countries, including Canada, the UK and the EU. "
            "International delivery takes 7 to 14 business days, and import duties are "
            "collected at checkout so there are no surprise fees on delivery."
        ),
        questions=(
            "Do you ship internationally?",
            "Can you ship my order internationally?",
            "Do you offer international shipping?",
            "Do you ship to other countries?",
        ),
    ),
    Intent(
        id="return_item",
        answer=(
            "You can return most items within 30 days of delivery. Open Your orders, click "
            "Return item and print the prepaid label, then drop the parcel at any partner "
            "carrier location. Your refund is issued once we receive and check the item, "
            "usually within 5 business days."
        ),
        questions=(
            "How do I return an item?",
            "How do I return an item I bought?",
            "The headphones I bought don't fit me, how do I return them for my money back?",
            "I want to return an item.",
        ),
    ),
    Intent(
        id="exchange_item",
        answer=(
            "Yes, exchanges for a different size or color are free within 30 days of delivery. "
            "Open Your orders, click Exchange item and choose the new variant; we ship the "
            "replacement as soon as the carrier scans your return. If the new variant is out "
            "of stock, we refund you instead."
        ),
        questions=(
            "Can I exchange an item for a different size?",
            "I need to exchange my item for a different size.",
            "The shirt I got is too small, can I get a larger one instead?",
            "Is it possible to exchange an item for a different size or color?",
        ),
    ),
    Intent(
        id="damaged_item",
        answer=(
            "Sorry about that! Open Your orders, click Report a problem on the order and upload "
            "a photo of the damage within 14 days of delivery. We ship a free replacement right "
            "away, or refund you if you prefer, and you don't need to send the damaged item "
            "back."
        ),
        questions=(
            "My item arrived damaged, what should I do?",
            "What do I do if my item arrives damaged?",
            "The product I received is broken.",
            "The item I ordered arrived damaged, what are my options?",
        ),
    ),
    # --- developers and platform -----------------------------------------------------------
    Intent(
        id="create_api_key",
        answer=(
            "Go to Settings > Developer > API keys and click Create key. Give it a name and a "
            "scope; the key is shown only once, so copy it into your secret store right away. "
            "You can revoke a key at any time from the same page."
        ),
        questions=(
            "How do I create an API key?",
            "How do I generate an API key?",
            "I'm building an integration, how do I get credentials for the API?",
            "I need to create a new API key.",
        ),
    ),
    Intent(
        id="api_rate_limits",
        answer=(
            "The Acme Cloud API allows 600 requests per minute per key on paid plans and 60 on "
            "the Free plan. Over the limit you get HTTP 429 with a Retry-After header saying "
            "how many seconds to wait. Business customers can ask support for a higher limit."
        ),
        questions=(
            "What are the API rate limits?",
            "What is the rate limit for the API?",
            "I keep getting 429 Too Many Requests errors from your API, what's the cap?",
            "Is there a rate limit on API requests?",
        ),
    ),
    Intent(
        id="export_data",
        answer=(
            "Go to Settings > Account > Export data and click Start export. We prepare a ZIP "
            "archive with your files plus CSV and JSON for your records, and email you a "
            "download link when it is ready, usually within an hour. The link is valid for 7 "
            "days."
        ),
        questions=(
            "How do I export my data?",
            "Is there a way to export my data?",
            "I want to export all my data.",
            "export my data",
        ),
    ),
    Intent(
        id="data_residency",
        answer=(
            "Acme Cloud runs data centers in the US (Virginia), the EU (Frankfurt) and "
            "Asia-Pacific (Singapore). You choose the region when you create a workspace and "
            "your data stays there, backups included. Business customers can move an existing "
            "workspace to another region through support."
        ),
        questions=(
            "Where is my data stored?",
            "Where is my data physically stored?",
            "Where do you store my data?",
            "where is data stored",
        ),
    ),
    Intent(
        id="service_status",
        answer=(
            "Check status.acme.example for the live status of every Acme Cloud service and any "
            "ongoing incident; you can subscribe there to email or SMS updates. If the status "
            "page shows everything operational but you still can't connect, contact support "
            "with the time and any error message."
        ),
        questions=(
            "Is Acme Cloud down right now?",
            "Is there an outage at Acme Cloud right now?",
            "Acme Cloud isn't loading for me, is it down?",
            "is acme cloud down",
        ),
    ),
    Intent(
        id="uptime_sla",
        answer=(
            "The Business plan has a 99.9% monthly uptime SLA. If we miss it, you get a service "
            "credit of 10% to 30% of that month's fee depending on the downtime; claim it "
            "through support within 30 days. Free and Pro have no formal SLA, but every "
            "incident is published on our status page."
        ),
        questions=(
            "What uptime do you guarantee?",
            "What is your uptime guarantee?",
            "uptime guarantee",
            "Do you guarantee a certain uptime?",
        ),
    ),
    Intent(
        id="contact_support",
        answer=(
            "Use the chat button in the bottom right corner of the app, or email "
            "support@acme.example. Chat is staffed 24/7 for paid plans and weekdays 9 am to 6 "
            "pm Eastern on Free. Business customers also have a phone line listed under "
            "Settings > Support."
        ),
        questions=(
            "How do I contact customer support?",
            "How do I get in touch with customer support?",
            "How can I talk to a real person?",
            "What's the best way to reach customer support?",
        ),
    ),
)

_INTENT_BY_QUESTION: dict[str, Intent] = {q: i for i in INTENTS for q in i.questions}


def intent_of(question: str) -> str | None:
    """The id of the intent a workload question belongs to (exact text), else None."""
    intent = _INTENT_BY_QUESTION.get(question)
    return intent.id if intent is not None else None


def answer_for(question: str) -> str | None:
    """The answer to a workload question (exact text), else None."""
    intent = _INTENT_BY_QUESTION.get(question)
    return intent.answer if intent is not None else None


def replay(seed: int = 0, *, repeats: int = 1) -> list[WorkloadItem]:
    """A deterministic stream in which every question of every intent appears ``repeats`` times.

    Each pass is a random interleaving of the intents' question lists that keeps each list's
    order, so an intent's canonical question is asked before its paraphrases and the
    paraphrases arrive later, mixed in with other intents. Later passes ask the very same
    texts again (exact-cache hits), in a fresh order. ``is_first_ask`` marks the first
    question of each intent in the whole stream. Uses ``random.Random(seed)`` only.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = random.Random(seed)
    stream: list[WorkloadItem] = []
    seen: set[str] = set()
    for _ in range(repeats):
        # One slot per question, labelled with its intent; shuffling the labels and filling
        # each intent's slots in list order gives a uniformly random order-preserving merge.
        slots = [index for index, intent in enumerate(INTENTS) for _ in intent.questions]
        rng.shuffle(slots)
        next_question = [0] * len(INTENTS)
        for index in slots:
            intent = INTENTS[index]
            question = intent.questions[next_question[index]]
            next_question[index] += 1
            stream.append(WorkloadItem(intent.id, question, intent.id not in seen))
            seen.add(intent.id)
    return stream
