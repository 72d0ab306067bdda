// End-to-end steps of the account lifecycle (issue 18), run by e2e.mjs
// after the viewer's step: change the password through the Account form
// (this session stays, another one ends, the new password signs in), a
// system administrator disables the viewer on the Users page (the viewer's
// sign-in is then refused), and "Sign out everywhere" ends every session,
// the one that asked included. Returns the admin's password as it then is,
// and leaves `page` signed in with it.

/**
 * @param {object} t the walk-through's tools: { page, browserFor, baseURL, step, check, shot, signIn, admin: { email, password }, viewer }
 */
export async function lifecycleSteps(t) {
  const { page, browserFor, baseURL, step, check, shot, signIn, admin, viewer } = t;
  const NEW_PASSWORD = 'a-new-admin-password-456';
  const other = await browserFor(baseURL);
  const b = other.page;
  let password = admin.password;
  const onSignIn = async (p) => {
    await p.goto('/account');
    await p.waitForURL(/\/signin/);
    await p.getByRole('button', { name: 'Sign in' }).waitFor();
  };

  await step('change the password on the Account page: this session stays, another ends, the new one signs in', [['PUT', '/api/v1/me/password']], async () => {
    await signIn(b, admin.email, admin.password);
    await page.goto('/account');
    const form = page.getByRole('form', { name: 'Change password' });
    await form.getByLabel('Current password', { exact: true }).fill('not-the-password-1');
    await form.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await form.getByLabel('Confirm new password', { exact: true }).fill(NEW_PASSWORD);
    await form.getByRole('button', { name: 'Change password' }).click();
    const current = form.getByLabel('Current password', { exact: true });
    await page.waitForFunction(() => document.querySelector('form[aria-label="Change password"] input[aria-invalid="true"]'));
    check((await current.getAttribute('aria-invalid')) === 'true', 'a wrong current password should be marked beside its field');
    const said = await page.locator('.field:has(input[aria-invalid="true"]) .error').first().textContent();
    console.log(`   wrong current password, beside the field: "${said}"`);
    await shot(page, '23-account-wrong-current-password');
    await current.fill(admin.password);
    await form.getByRole('button', { name: 'Change password' }).click();
    await page.getByText('Your password is changed.').waitFor();
    password = NEW_PASSWORD;
    await shot(page, '23b-account-password-changed');
    // This session stays.
    await page.reload();
    await page.getByTestId('whoami').waitFor();
    check(!new URL(page.url()).pathname.startsWith('/signin'), 'the session that changed the password was signed out');
    // The other one ended.
    await onSignIn(b);
    // The old password is refused, the new one signs in.
    await b.getByLabel('Email').fill(admin.email);
    await b.getByLabel('Password').fill(admin.password);
    await b.getByRole('button', { name: 'Sign in' }).click();
    await b.getByRole('alert').first().waitFor();
    check(new URL(b.url()).pathname.startsWith('/signin'), 'the old password still signs in');
    await signIn(b, admin.email, NEW_PASSWORD);
  }, page, [{ status: 422, path: '/api/v1/me/password', why: 'a wrong current password, on purpose' }]);
  // The second browser's expected failures are its own page's; it is not watched by `step`.

  let disabled = false;
  await step('a system administrator disables the viewer on the Users page; the viewer’s sign-in is refused', [['GET', '/api/v1/users'], ['POST', '/api/v1/users/{id}/disable']], async () => {
    await page.goto('/account');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Users', exact: true }).click();
    await page.getByRole('heading', { name: 'Users', exact: true }).waitFor();
    const row = page.getByTestId(`user-${viewer.email}`);
    await row.waitFor();
    check((await row.textContent()).includes('Active'), 'the viewer should be active before');
    await row.getByRole('button', { name: `Disable ${viewer.email}` }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByText('can no longer sign in').waitFor();
    await dlg.getByRole('button', { name: 'Disable account' }).click();
    await row.getByText('Disabled').waitFor();
    disabled = true;
    await shot(page, '24-users-viewer-disabled');
    const v = await browserFor(baseURL);
    await v.page.goto('/signin');
    await v.page.getByLabel('Email').fill(viewer.email);
    await v.page.getByLabel('Password').fill(viewer.password);
    await v.page.getByRole('button', { name: 'Sign in' }).click();
    const alert = v.page.getByRole('alert').first();
    await alert.waitFor();
    const text = (await alert.textContent()) ?? '';
    check(/disabled/i.test(text), `the disabled viewer's sign-in should say the account is disabled, got "${text}"`);
    check(new URL(v.page.url()).pathname.startsWith('/signin'), 'the disabled viewer got past the sign-in page');
    await shot(v.page, '24b-signin-disabled-account');
    await v.ctx.close();
  }, page);

  await step('the viewer is enabled again from the Users page', [['POST', '/api/v1/users/{id}/enable']], async () => {
    check(disabled, 'the viewer was not disabled');
    const row = page.getByTestId(`user-${viewer.email}`);
    await row.getByRole('button', { name: `Enable ${viewer.email}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Enable account' }).click();
    await row.getByText('Active').waitFor();
  }, page);

  await step('sign out everywhere lands on the sign-in page and ends the other sessions too', [['DELETE', '/api/v1/me/sessions']], async () => {
    await b.goto('/account');
    await b.getByRole('button', { name: 'Sign out everywhere' }).click();
    const dlg = b.getByRole('dialog');
    await dlg.getByText('this one included').waitFor();
    await shot(b, '25-account-sign-out-everywhere');
    await dlg.getByRole('button', { name: 'Sign out all sessions' }).click();
    await b.waitForURL(/\/signin/);
    await b.getByRole('button', { name: 'Sign in' }).waitFor();
    // This browser's session went too.
    await onSignIn(b);
    // And so did the walk-through's own: it signs in again for the steps after this one.
    await onSignIn(page);
    await signIn(page, admin.email, password);
  }, page, [{ status: 401, path: '/api/v1/me', why: 'the walk-through’s session ended by "Sign out everywhere", on purpose' }]);

  await other.ctx.close();
  return password;
}

/**
 * Revoke the running agent from its gateway's page: the console asks first,
 * says what happened, and the gateway turns offline (its heartbeats are
 * refused). `G` is the gateway route's OpenAPI path.
 */
export async function revokeAgentStep(t, { G, url, agentOnline }) {
  const { page, step, check, shot } = t;
  await step('revoke the agent from the gateway page: asked first, then the gateway goes offline', [['DELETE', `${G}/agent`]], async () => {
    check(agentOnline, 'the agent is not online');
    await page.goto(url);
    const head = page.locator('.page-head');
    await head.getByText('Online').waitFor();
    await head.getByRole('button', { name: 'Revoke agent' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByText('stops at once').waitFor();
    await shot(page, '26-gateway-revoke-agent');
    await dlg.getByRole('button', { name: 'Revoke agent' }).click();
    await page.getByTestId('agent-revoked').waitFor();
    // Three missed heartbeats (2 s each in the walk-through) and the page reloads every 10 s.
    await head.getByText('Offline').waitFor({ timeout: 45000 });
    await shot(page, '26b-gateway-agent-revoked');
  }, page);
}
