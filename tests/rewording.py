"""A fake LLM that rewords its answers, as a real one does at temperature 0.7.

Every intent of `semcache_demo.workload` gets four phrasings of the same right answer:
the workload's own answer and three rewordings written the way chat models vary theirs
(another opener, sentences reordered or merged, synonyms, a detail dropped or added).
`RewordingLLM` answers a question with one of its intent's phrasings, chosen by a seeded
random generator, so two calls for the same question rarely return the same text.

Test data only: it lives under tests/ and is imported by tests and benchmarks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from semcache_demo.workload import INTENTS, intent_of

REWORDINGS: dict[str, tuple[str, ...]] = {
    "reset_password": (
        'To reset it, open the sign-in page and click "Forgot password?", then type the '
        "email address you registered with. You'll get a link by email; it expires after an "
        "hour. Nothing in your inbox? Look in spam, or have a workspace admin trigger a "
        "reset under Settings > Members.",
        'No problem! Use the "Forgot password?" link on the login screen and enter your '
        "account email. A password reset link is sent to you and works for 60 minutes. If "
        "the email doesn't show up, check the spam folder; an admin can also send you a "
        "reset from Settings > Members.",
        'Head to the Acme Cloud sign-in page, choose "Forgot password?" and submit your '
        "account's email address. We'll send a reset link valid for 60 minutes. Still "
        "nothing after a few minutes? Check spam, or ask your workspace admin to reset it "
        "for you in Settings > Members.",
    ),
    "change_password": (
        "Sign in, open Settings > Security and choose Change password. Type your current "
        "password, then the new one twice (at least 12 characters). Once you save, you're "
        "signed out of every other session.",
        "You can change it under Settings > Security > Change password while you're logged "
        "in. You'll need your current password plus the new one entered twice, and the new "
        "password needs 12 or more characters. Saving it signs out all your other sessions.",
        "Go to Settings > Security and click Change password. Confirm your existing password, "
        "enter a new password of at least 12 characters twice, and save. Note that this "
        "logs you out of all other devices.",
    ),
    "change_email": (
        "Open Settings > Profile and click Edit beside your email address, then type the new "
        "address. We'll email a confirmation link to it, and the switch happens when you "
        "click that link. Nothing else changes: your password, data and billing stay as "
        "they are.",
        "Sure: in Settings > Profile, choose Edit next to the email field and enter the "
        "address you want to use. Confirm it via the link we send to the new inbox; until "
        "then the old email stays active. Your data, password and billing are unaffected.",
        "You can update it from Settings > Profile by clicking Edit next to your current "
        "email. After you enter the new address we send it a confirmation link, and the "
        "change takes effect as soon as you click it. Your account keeps the same password, "
        "data and billing.",
    ),
    "enable_two_factor": (
        "Open Settings > Security and choose Enable two-factor authentication. Scan the QR "
        "code with an authenticator app (Google Authenticator, 1Password, etc.) and type in "
        "the 6-digit code it shows. Save your backup codes in a safe place: without them you "
        "can't get in if your phone is lost.",
        "To turn on 2FA, go to Settings > Security > Enable two-factor authentication, scan "
        "the QR code in your authenticator app and confirm with the six-digit code. Store the "
        "backup codes safely, since they're your only way back in if you lose your phone.",
        "Sure! In Settings > Security, click Enable two-factor authentication, then scan the "
        "code with an app like Google Authenticator or 1Password and enter the 6-digit code "
        "to finish. Keep the backup codes somewhere secure in case you ever lose your device.",
    ),
    "delete_account": (
        "Open Settings > Account > Delete account and confirm with your password. This can't "
        "be undone: within 30 days your files, workspaces and billing history are erased for "
        "good. On a paid plan, cancel your subscription first so you aren't charged again.",
        "You can delete it under Settings > Account > Delete account; you'll be asked for "
        "your password. Be aware that deletion is permanent and everything (files, "
        "workspaces, billing history) is wiped within 30 days with no way to recover it. "
        "Cancel any paid subscription beforehand to avoid another charge.",
        "To delete your account, go to Settings > Account, choose Delete account and enter "
        "your password to confirm. All your files, workspaces and billing history are "
        "permanently erased within 30 days. If you pay for a plan, cancel it first so you "
        "aren't billed again.",
    ),
    "deactivate_account": (
        "Open Settings > Account > Deactivate account. Your profile is hidden and you're "
        "signed out on every device, but all your data is kept; just sign in again to "
        "reactivate. If you'd rather erase your data permanently, choose Delete account.",
        "You can deactivate it from Settings > Account > Deactivate account. Deactivating "
        "hides your profile and logs you out everywhere without deleting anything, and "
        "signing back in reactivates the account. To remove your data for good, use Delete "
        "account instead.",
        "Go to Settings > Account and choose Deactivate account. This signs you out "
        "everywhere and hides your profile while keeping all of your data, so you can come "
        "back any time by signing in. Want everything erased instead? Use Delete account.",
    ),
    "transfer_ownership": (
        "This has to be done by the current owner: open Settings > Members, click the menu "
        "next to the person who should take over and select Transfer ownership. They must "
        "already be a member with a verified email address. You remain in the workspace as "
        "an admin afterwards unless you remove yourself.",
        "Only the workspace owner can transfer ownership. In Settings > Members, open the "
        "menu beside the new owner and pick Transfer ownership; the new owner needs to be an "
        "existing member with a verified email. After the handover you stay on as an admin.",
        "As the current owner, go to Settings > Members, open the menu next to the member "
        "you want to make owner and choose Transfer ownership. That person must already be "
        "in the workspace with a verified email. You'll stay on as an admin unless you "
        "leave the workspace.",
    ),
    "add_team_member": (
        "Open Settings > Members, click Invite member, type their email address and pick a "
        "role. They'll receive an invitation email that stays valid for 7 days. On a paid "
        "plan every new member adds a seat, prorated for the current billing period.",
        "To add someone, go to Settings > Members > Invite member, enter their email and "
        "choose what role they get. The invite they receive by email expires after 7 days. "
        "Note that on paid plans each extra member is a new seat, billed prorated.",
        "Sure! In Settings > Members, click Invite member, enter the person's email address "
        "and select a role. We email them an invitation valid for a week. If you're on a "
        "paid plan, the new seat is charged prorated for the rest of the current period.",
    ),
    "remove_team_member": (
        "Open Settings > Members, click the menu next to that person and select Remove from "
        "workspace. Their access ends immediately and any files they own are transferred to "
        "you. You get credit for the freed seat on your next invoice.",
        "To remove someone, go to Settings > Members, open the menu beside their name and "
        "choose Remove from workspace. They lose access right away, their files move to you, "
        "and the seat is credited on your next invoice.",
        "In Settings > Members, use the menu next to the member and pick Remove from "
        "workspace. Access is revoked at once and the files they owned become yours. The "
        "seat you free up shows as a credit on the next invoice.",
    ),
    "sso_setup": (
        "SSO (SAML 2.0 or OIDC) is included in the Business plan. Open Settings > Security > "
        "Single sign-on, pick your identity provider, such as Okta, Azure AD or Google "
        "Workspace, and follow the guided setup. When it's working you can require SSO for "
        "every member.",
        "Single sign-on is a Business plan feature and supports SAML 2.0 and OIDC. Go to "
        "Settings > Security > Single sign-on, select your identity provider (Okta, Azure "
        "AD, Google Workspace and more) and walk through the setup wizard. Afterwards you can "
        "make SSO mandatory for all members.",
        "On the Business plan you can set up SAML 2.0 or OIDC single sign-on under Settings "
        "> Security > Single sign-on: choose your identity provider and follow the guided "
        "steps. Okta, Azure AD and Google Workspace are supported, among others. Once it "
        "works, you can enforce SSO for everyone.",
    ),
    "cancel_subscription": (
        "Open Settings > Billing and click Cancel subscription. You keep your plan until the "
        "current billing period ends, and you won't be charged again. We keep your data for "
        "30 days afterwards in case you change your mind.",
        "You can cancel anytime from Settings > Billing > Cancel subscription. The plan "
        "remains active through the end of the period you've paid for, with no further "
        "charges. Your data is retained for 30 days after that, in case you come back.",
        "To cancel, go to Settings > Billing and choose Cancel subscription. Nothing more is "
        "charged, and your plan keeps working until the end of this billing period. After "
        "that we hold on to your data for 30 days in case you decide to return.",
    ),
    "pause_subscription": (
        "Yes, you can. Open Settings > Billing and select Pause subscription; pauses last 1 "
        "to 3 months and are available once a year. During the pause you aren't billed, "
        "your data is kept and the workspace is read-only. Billing restarts automatically "
        "when the pause ends, or sooner if you click Resume.",
        "You can pause it from Settings > Billing > Pause subscription for 1 to 3 months, "
        "once per year. While it's paused there are no charges, nothing is deleted and the "
        "workspace becomes read-only. It resumes automatically at the end, or you can click "
        "Resume earlier.",
        "Sure! Go to Settings > Billing and choose Pause subscription. You can pause for "
        "between one and three months, once a year; you're not billed in that time, your "
        "data stays put and the workspace is read-only. Billing picks up again automatically "
        "when the pause is over, or whenever you click Resume.",
    ),
    "upgrade_plan": (
        "Open Settings > Billing > Change plan and select the plan you'd like. An upgrade "
        "applies right away, and you're charged a prorated amount for the remainder of the "
        "current billing period. Your data and settings all carry over.",
        "To upgrade, go to Settings > Billing > Change plan and choose the new plan. It "
        "takes effect immediately; you only pay the prorated difference for the rest of this "
        "period. Everything you have, data and settings included, stays as it is.",
        "Sure: in Settings > Billing, click Change plan and pick the higher plan. Upgrades "
        "are immediate and billed prorated for what's left of the billing period, and all "
        "of your data and settings come with you.",
    ),
    "downgrade_plan": (
        "Open Settings > Billing > Change plan and select the smaller plan. A downgrade takes "
        "effect at the start of your next billing period, so you keep your current features "
        "until then. If you're above the new plan's seat or storage limits, you'll be asked "
        "to reduce usage first.",
        "You can downgrade from Settings > Billing > Change plan by choosing a lower plan. "
        "The change applies from your next billing period, and your current features stay "
        "available until then. If you use more seats or storage than the new plan allows, "
        "we'll ask you to cut back first.",
        "To downgrade, go to Settings > Billing, click Change plan and pick the smaller one. "
        "It kicks in at the start of the next billing period; until then nothing changes. "
        "Note that you'll need to get under the new plan's seat and storage limits first.",
    ),
    "free_trial": (
        "Yes! Every new workspace comes with a 14-day free trial of Pro, and you don't need a "
        "credit card to start. When the trial ends you choose a paid plan or stay on Free; "
        "nothing is charged automatically. Either way your data is kept.",
        "We do: new workspaces get 14 days of the Pro plan for free, no credit card "
        "required. At the end of the trial you can pick a paid plan or continue on the Free "
        "plan, and we never charge you automatically. Your data stays either way.",
        "Yes, there's a 14-day Pro trial for every new workspace, with no card needed. "
        "Afterwards you either choose a paid plan or keep using the Free plan; you won't be "
        "billed automatically, and your data is kept whichever you choose.",
    ),
    "discounts": (
        "Yes. Registered nonprofits get 50% off any paid plan, and students and teachers get "
        "Pro for free with a school email. Apply under Settings > Billing > Discounts and "
        "upload proof of eligibility; we review applications within 3 business days.",
        "We offer 50% off every paid plan for registered nonprofits, and free Pro for "
        "students and teachers who sign up with a school email address. To apply, go to "
        "Settings > Billing > Discounts and upload your proof of eligibility. Reviews take "
        "up to 3 business days.",
        "We do! Nonprofits get half off any paid plan, and students and teachers can use Pro "
        "free with a school email. Submit your application from Settings > Billing > "
        "Discounts along with proof of eligibility, and we'll review it within 3 business "
        "days.",
    ),
    "storage_limits": (
        "Free includes 5 GB, Pro 1 TB per user, and Business 5 TB per user, pooled across the "
        "workspace. Your current usage is shown under Settings > Storage. Need more? Add 1 TB "
        "storage packs without switching plans.",
        "Storage depends on the plan: 5 GB on Free, 1 TB per user on Pro and 5 TB per user on "
        "Business (shared across the workspace). You can check usage in Settings > Storage, "
        "and buy extra 1 TB packs if you run out, without changing plan.",
        "The Free plan gives you 5 GB; Pro gives 1 TB per user; Business gives 5 TB per user, "
        "pooled for the whole workspace. See how much you're using under Settings > Storage. "
        "You can also add 1 TB storage packs on any plan.",
    ),
    "request_refund": (
        "You can ask for a refund within 30 days of a charge: open Settings > Billing > "
        "Payment history, select the charge and click Request refund. For store orders, open "
        "the order and choose Return or refund. Our billing team reviews each request within "
        "2 business days.",
        "Refunds can be requested up to 30 days after a charge. Go to Settings > Billing > "
        "Payment history, click the charge in question and pick Request refund; for store "
        "orders use Return or refund on the order instead. Billing reviews every request "
        "within two business days.",
        "Sure. Within 30 days of being charged, go to Settings > Billing > Payment history, "
        "choose the charge and click Request refund. If it's a store order, open that order "
        "and select Return or refund. We review all requests within 2 business days.",
    ),
    "refund_status": (
        "Once approved, refunds go back to your original payment method within 1 business "
        "day, though banks typically take 5 to 10 business days to show them. You can check "
        "the status and refund reference under Settings > Billing > Payment history. If it's "
        "been more than 10 business days, contact support with that reference.",
        "We send approved refunds to the original payment method within one business day, "
        "but it usually takes your bank 5 to 10 business days to post them. The status and "
        "a refund reference are in Settings > Billing > Payment history. Still nothing after "
        "10 business days? Reach out to support with the reference.",
        "Approved refunds leave us within 1 business day and go to the card or account you "
        "paid with; your bank may need 5 to 10 business days to display them. Check Settings "
        "> Billing > Payment history for the status and refund reference, and contact "
        "support with it if more than 10 business days have passed.",
    ),
    "download_invoice": (
        "You'll find every invoice under Settings > Billing > Invoices, where each one can be "
        "downloaded as a PDF. We also email them to the billing contact whenever you're "
        "charged. For store orders, open the order in Your orders and click Download invoice.",
        "Go to Settings > Billing > Invoices to download any invoice as a PDF. Invoices are "
        "also sent by email to your billing contact each time a charge happens. For a store "
        "order, use Download invoice on the order in Your orders.",
        "All of your invoices are in Settings > Billing > Invoices as downloadable PDFs, and "
        "a copy is emailed to the billing contact with every charge. If it's a store order, "
        "open it under Your orders and click Download invoice.",
    ),
    "update_billing_address": (
        "Open Settings > Billing > Billing details and edit the address. The new address is "
        "used on all future invoices; past invoices can't be edited, but support can reissue "
        "any from the last 90 days. Your billing address doesn't change where orders ship.",
        "You can change it under Settings > Billing > Billing details. Future invoices will "
        "show the updated address; existing invoices stay as they are, though support can "
        "reissue ones from the past 90 days. Shipping addresses aren't affected.",
        "Go to Settings > Billing > Billing details and update the address there. It appears "
        "on every invoice from now on. We can't edit old invoices, but support can reissue "
        "one from the last 90 days. This doesn't affect where your orders are shipped.",
    ),
    "update_payment_method": (
        "Open Settings > Billing > Payment method and click Replace card. Your new card is "
        "charged from the next payment on, and the old card is removed once you save. If a "
        "payment failed because your card expired, we retry within 24 hours of the update.",
        "To update your card, go to Settings > Billing > Payment method and choose Replace "
        "card. The new card is used for the next charge and the old one is deleted when you "
        "save. We'll retry any payment that failed due to an expired card within 24 hours.",
        "In Settings > Billing > Payment method, click Replace card and enter the new "
        "details. From the next charge on, we bill the new card and remove the old one. If a "
        "payment bounced because the card had expired, we try again within 24 hours.",
    ),
    "accepted_payment_methods": (
        "We take Visa, Mastercard, American Express, Discover and PayPal. Business customers "
        "on annual plans can also pay by bank transfer against an invoice. Cryptocurrency and "
        "checks are not accepted.",
        "You can pay with Visa, Mastercard, Amex, Discover or PayPal. Annual Business plans "
        "can additionally be paid by bank transfer on invoice. We don't accept crypto or "
        "checks.",
        "Accepted payment methods are Visa, Mastercard, American Express, Discover and "
        "PayPal, plus bank transfer against an invoice for Business customers on annual "
        "plans. We can't take cryptocurrency or checks.",
    ),
    "vat_tax_id": (
        "Open Settings > Billing > Billing details and add your VAT or tax ID in the Tax ID "
        "field. After it's validated, EU business customers are billed under the "
        "reverse-charge mechanism without VAT. The ID is shown on every invoice issued after "
        "you save it.",
        "You can add it in Settings > Billing > Billing details, in the Tax ID field. Once "
        "we validate it, EU businesses are invoiced with reverse charge, so no VAT is added. "
        "All invoices issued from then on will show the ID.",
        "Go to Settings > Billing > Billing details and enter your VAT number or tax ID under "
        "Tax ID. When it's validated, EU business customers pay no VAT thanks to the "
        "reverse-charge mechanism, and the ID appears on all future invoices.",
    ),
    "promo_code": (
        "Promo codes are case-sensitive and only valid until the date in the offer; most "
        "can't be combined with other discounts or used on sale items. When pasting, check "
        "for extra spaces. If it still doesn't work, send us the code and a screenshot via "
        "chat and we'll apply the discount manually.",
        "A few things to check: codes are case-sensitive, expire on the date stated in the "
        "offer, and usually can't be stacked with other discounts or applied to sale items. "
        "Make sure no extra spaces were pasted. Still failing? Send the code and a "
        "screenshot through chat and we'll add the discount by hand.",
        "Sorry about that! Promo codes are case-sensitive, expire on the offer's date and "
        "normally don't work with other discounts or on sale items. Watch out for stray "
        "spaces when you paste. If it keeps failing, share the code and a screenshot in chat "
        "and we'll apply it manually.",
    ),
    "track_order": (
        "Go to Your orders and click Track package next to the order to see the carrier and "
        "live tracking. We also email you the tracking number as soon as it ships. Tracking "
        "may take up to 24 hours to update after the label is created.",
        "You can track it from Your orders: click Track package beside the order for the "
        "carrier and live status. The tracking number is also emailed to you once the order "
        "ships. Note it can take up to a day for tracking to update after the label is made.",
        "Open Your orders and choose Track package on the order; you'll see the carrier and "
        "its live tracking status. We email the tracking number when the order ships, and "
        "the status can take up to 24 hours to update once the label is created.",
    ),
    "cancel_order": (
        "As long as the order hasn't shipped, you can cancel it from Your orders: click "
        "Cancel order and you'll get a full refund. Shipped orders can't be cancelled, but "
        "you can return them for free within 30 days.",
        "Open Your orders and click Cancel order; if it hasn't shipped yet, you're refunded "
        "in full. Once it has shipped, cancellation isn't possible, but a free return within "
        "30 days is.",
        "You can cancel from Your orders with Cancel order, provided the order hasn't "
        "shipped, and we refund the full amount. If it's already on its way, you can't "
        "cancel it, but you can send it back free of charge within 30 days.",
    ),
    "change_shipping_address": (
        "If it hasn't shipped yet, open the order in Your orders and click Edit shipping "
        "address. Once it has shipped we can't change the address, but the carrier's "
        "redirect link in your tracking email lets you do it. To update your default address "
        "for future orders, go to Settings > Addresses.",
        "Before the order ships, you can change the address in Your orders with Edit "
        "shipping address. After shipping, we can't edit it ourselves; use the carrier's "
        "redirect link from the tracking email instead. Your default address for future "
        "orders is under Settings > Addresses.",
        "You can edit it from Your orders (Edit shipping address) as long as the order "
        "hasn't shipped. If it's already shipped, the carrier's redirect link in your "
        "tracking email is the way to go, since we can't change it anymore. For future "
        "orders, update your default in Settings > Addresses.",
    ),
    "shipping_times": (
        "Within the continental US, standard shipping takes 3 to 5 business days and express "
        "1 to 2 business days. Orders placed before 2 pm Eastern ship the same day, and "
        "checkout shows you an exact delivery estimate.",
        "Standard delivery is 3-5 business days and express is 1-2 business days in the "
        "continental US. If you order before 2 pm Eastern, it ships that same day. You'll "
        "see the exact estimate at checkout.",
        "It depends on the option: standard shipping arrives in 3 to 5 business days, "
        "express in 1 to 2, within the continental US. We ship same-day for orders placed "
        "before 2 pm Eastern, and checkout gives an exact delivery date estimate.",
    ),
    "international_shipping": (
        "Yes! We ship to more than 40 countries, including Canada, the UK and the EU. "
        "International orders take 7 to 14 business days to arrive, and import duties are "
        "collected at checkout, so you won't face surprise fees on delivery.",
        "We do ship internationally, to over 40 countries such as Canada, the UK and EU "
        "member states. Expect delivery in 7 to 14 business days. Import duties are charged "
        "at checkout, so there are no extra fees when the package arrives.",
        "Yes, we deliver to 40+ countries, Canada, the UK and the EU among them. Delivery "
        "abroad takes 7-14 business days, and because we collect import duties at checkout, "
        "nothing extra is due on delivery.",
    ),
    "return_item": (
        "Most items can be returned within 30 days of delivery. Go to Your orders, click "
        "Return item and print the prepaid label, then drop the package off at any partner "
        "carrier location. We issue your refund once we've received and checked the item, "
        "usually within 5 business days.",
        "You have 30 days from delivery to return most items. In Your orders, choose Return "
        "item, print the prepaid shipping label and leave the parcel at a partner carrier "
        "location. The refund follows once we receive and inspect it, typically within 5 "
        "business days.",
        "Sure: open Your orders, click Return item and print the prepaid label, then drop "
        "the parcel at any of our partner carriers. Returns are accepted for most items "
        "within 30 days of delivery, and we refund you within about 5 business days of "
        "receiving and checking the item.",
    ),
    "exchange_item": (
        "Yes, you can exchange for another size or color for free within 30 days of "
        "delivery. Open Your orders, click Exchange item and pick the new variant; the "
        "replacement ships as soon as the carrier scans your return. If the variant you want "
        "is out of stock, we refund you instead.",
        "Exchanges for a different size or color are free for 30 days after delivery. Go to "
        "Your orders, choose Exchange item and select the variant you want. We send the "
        "replacement once the carrier scans your return, and if it's out of stock you get a "
        "refund instead.",
        "Absolutely! Within 30 days of delivery, open Your orders, click Exchange item and "
        "choose the size or color you'd like; there's no charge. We ship the new one as soon "
        "as your return is scanned by the carrier, or refund you if that variant is out of "
        "stock.",
    ),
    "damaged_item": (
        "I'm sorry to hear that! Go to Your orders, click Report a problem on the order and "
        "upload a photo of the damage within 14 days of delivery. We'll send a free "
        "replacement right away, or a refund if you'd rather, and you don't have to return "
        "the damaged item.",
        "Sorry about that. Within 14 days of delivery, open the order in Your orders, choose "
        "Report a problem and attach a photo of the damage. We ship a replacement at no cost "
        "immediately, or refund you if you prefer; there's no need to send the broken item "
        "back.",
        "So sorry it arrived damaged! Open Your orders, click Report a problem and upload a "
        "photo within 14 days of delivery. You can get a free replacement shipped right away "
        "or a refund, and you can keep the damaged item; no return needed.",
    ),
    "create_api_key": (
        "Open Settings > Developer > API keys and click Create key. Give it a name and a "
        "scope; the key is displayed only once, so copy it into your secret store "
        "immediately. You can revoke keys any time from the same page.",
        "To create an API key, go to Settings > Developer > API keys, click Create key, and "
        "set a name and scope. Copy the key straight into your secrets manager, because it "
        "is shown just once. Keys can be revoked from that page whenever you like.",
        "In Settings > Developer > API keys, choose Create key and enter a name and scope. "
        "We show the key a single time, so save it in your secret store right away. The same "
        "page lets you revoke any key at any time.",
    ),
    "api_rate_limits": (
        "On paid plans the Acme Cloud API allows 600 requests per minute per key, and 60 on "
        "Free. If you exceed it you get an HTTP 429 with a Retry-After header telling you how "
        "many seconds to wait. Business customers can ask support to raise the limit.",
        "Each API key can make 600 requests per minute on paid plans, or 60 per minute on "
        "the Free plan. Requests over the limit return HTTP 429 plus a Retry-After header "
        "with the wait in seconds. If you're on Business, support can increase your limit.",
        "The limit is 600 requests/minute per key on paid plans and 60/minute on Free. Going "
        "over returns a 429 status with a Retry-After header that says how long to wait. "
        "Business customers who need more can contact support for a higher limit.",
    ),
    "export_data": (
        "Open Settings > Account > Export data and click Start export. We build a ZIP "
        "archive with your files and CSV and JSON records, then email you a download link "
        "when it's ready, usually within an hour. The link stays valid for 7 days.",
        "You can export everything from Settings > Account > Export data by clicking Start "
        "export. We put together a ZIP of your files plus CSV and JSON copies of your "
        "records and email a download link, normally within an hour; it expires after 7 "
        "days.",
        "Sure! Go to Settings > Account > Export data and choose Start export. You'll get an "
        "email with a link to a ZIP archive (your files, plus your records as CSV and JSON), "
        "usually within an hour. The download link works for 7 days.",
    ),
    "data_residency": (
        "Acme Cloud has data centers in the US (Virginia), the EU (Frankfurt) and "
        "Asia-Pacific (Singapore). You pick the region when creating a workspace, and your "
        "data, backups included, stays there. Business customers can move an existing "
        "workspace to another region through support.",
        "Your data lives in the region you choose when you create the workspace: US "
        "(Virginia), EU (Frankfurt) or Asia-Pacific (Singapore). It never leaves that "
        "region, including backups. On Business, support can migrate an existing workspace "
        "to a different region.",
        "We run data centers in Virginia (US), Frankfurt (EU) and Singapore (Asia-Pacific). "
        "The region is chosen when a workspace is created, and all data including backups "
        "stays in it. Business customers can ask support to move a workspace to another "
        "region.",
    ),
    "service_status": (
        "Go to status.acme.example for the live status of every Acme Cloud service and any "
        "ongoing incidents; you can subscribe to email or SMS updates there. If it shows all "
        "systems operational but you still can't connect, contact support with the time and "
        "any error message.",
        "The live status of all Acme Cloud services, including current incidents, is at "
        "status.acme.example, where you can also sign up for email or SMS alerts. If "
        "everything looks operational and you still can't connect, tell support the time "
        "and the error you see.",
        "Check status.acme.example: it shows the live state of each service and any ongoing "
        "incident, and you can subscribe to updates by email or SMS. Status page all green "
        "but still having trouble connecting? Contact support with the time and any error "
        "message.",
    ),
    "uptime_sla": (
        "Business plans come with a 99.9% monthly uptime SLA. If we miss it, you receive a "
        "service credit of 10% to 30% of that month's fee, depending on the downtime; claim "
        "it through support within 30 days. Free and Pro have no formal SLA, but we publish "
        "every incident on the status page.",
        "On the Business plan we guarantee 99.9% uptime per month. Missing it earns you a "
        "credit of 10-30% of the monthly fee, based on how long we were down, if you claim "
        "it via support within 30 days. Free and Pro plans don't have a formal SLA, though "
        "all incidents are posted on our status page.",
        "The Business plan includes a 99.9% monthly uptime SLA, with service credits of 10% "
        "to 30% of the month's fee when we fall short (claim through support within 30 "
        "days). There's no formal SLA on Free or Pro, but every incident appears on our "
        "status page.",
    ),
    "contact_support": (
        "Click the chat button in the bottom right corner of the app, or email "
        "support@acme.example. Paid plans get 24/7 chat; on Free, chat is staffed weekdays "
        "from 9 am to 6 pm Eastern. Business customers also have a phone line, listed under "
        "Settings > Support.",
        "You can reach us through the chat button at the bottom right of the app or by "
        "emailing support@acme.example. Chat runs 24/7 on paid plans and weekdays 9 am-6 pm "
        "Eastern on the Free plan. If you're on Business, there's also a phone number under "
        "Settings > Support.",
        "The quickest way is the chat button in the app's bottom right corner; you can also "
        "email support@acme.example. Chat is available around the clock for paid plans and "
        "9 am to 6 pm Eastern on weekdays for Free. Business customers can call the phone "
        "line shown in Settings > Support.",
    ),
}

PHRASINGS: dict[str, tuple[str, ...]] = {
    intent.id: (intent.answer, *REWORDINGS[intent.id]) for intent in INTENTS
}
"""Every intent's right answers: the workload's own answer first, then its rewordings."""

_INTENT_OF_ANSWER: dict[str, str] = {
    text: intent_id for intent_id, texts in PHRASINGS.items() for text in texts
}


def intent_of_answer(answer: str) -> str | None:
    """The intent a phrasing answers (exact text), else None."""
    return _INTENT_OF_ANSWER.get(answer)


def is_right(question: str, answer: str) -> bool:
    """Is ``answer`` one of the right phrasings for ``question``'s intent?"""
    intent = intent_of(question)
    return intent is not None and _INTENT_OF_ANSWER.get(answer) == intent


class RewordingLLM:
    """A fake LLM: a random phrasing of the question's intent's answer (seeded).

    Args:
        seed: seed of the generator that picks the phrasing.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self.calls = 0

    def __call__(self, question: str) -> str:
        intent = intent_of(question)
        if intent is None:
            raise KeyError(f"not a workload question: {question!r}")
        self.calls += 1
        return self._rng.choice(PHRASINGS[intent])


def same_intent_pairs() -> Iterator[tuple[str, str]]:
    """Every unordered pair of different phrasings of one intent."""
    for texts in PHRASINGS.values():
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                yield a, b


def cross_intent_pairs() -> Iterator[tuple[str, str]]:
    """Every unordered pair of phrasings of two different intents."""
    ids = list(PHRASINGS)
    for i, x in enumerate(ids):
        for y in ids[i + 1 :]:
            for a in PHRASINGS[x]:
                for b in PHRASINGS[y]:
                    yield a, b
