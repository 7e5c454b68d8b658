"""The objectives against exact answers on the linear-Gaussian model: the IWAE bound at K = 1 is the
ELBO under the same noise, it rises toward log p(x) with K and equals it for every K under the exact
posterior; STL's guide gradient is exactly zero there; DReG's gradients agree with the plain IWAE
gradients in expectation; the Rényi bound spans the ELBO and the IWAE bound."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO

from ppl_models.inference.objectives import ImportanceWeighted, log_weights, make_objective
from ppl_models.linear_gaussian import LinearFullGuide, LinearGaussian, LinearGuide


def data(n=64, seed=0):
    model = LinearGaussian(d=3, k=2)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 2, generator=g)
        x = z @ model.W.T + model.b + model.log_s.exp() * torch.randn(n, 3, generator=g)
    return model, x


def bound(objective, model, guide, x):
    return -objective.loss(model.model, guide.guide, x) / len(x)


def test_iwae_with_one_particle_is_the_elbo_under_the_same_noise():
    model, x = data()
    guide = LinearGuide(model)
    pyro.set_rng_seed(3)
    elbo = Trace_ELBO().loss(model.model, guide.guide, x)
    pyro.set_rng_seed(3)
    iwae = ImportanceWeighted(1).loss(model.model, guide.guide, x)
    assert iwae == pytest.approx(elbo, rel=1e-6)


def test_the_iwae_bound_rises_toward_log_px_with_k():
    model, x = data(n=200)
    guide = LinearGuide(model)
    exact = model.log_marginal(x).mean().item()
    closed_elbo = guide.closed_form_elbo(model, x).mean().item()
    means = {}
    for k in (1, 5, 50, 500):
        pyro.set_rng_seed(0)
        means[k] = sum(bound(ImportanceWeighted(k), model, guide, x) for _ in range(10)) / 10
    assert means[1] == pytest.approx(closed_elbo, abs=0.05)
    assert means[1] < means[5] < means[50] < means[500] <= exact + 1e-3
    assert exact - means[500] < 0.1 * (exact - closed_elbo)  # most of the gap closed at K = 500


@pytest.mark.parametrize("k", [1, 5, 50])
def test_under_the_exact_posterior_every_k_gives_log_px(k):
    model, x = data()
    guide = LinearFullGuide(model, exact=True)
    lw = log_weights(model.model, guide.guide, x, num_particles=k)
    assert lw.shape == (k, len(x))
    torch.testing.assert_close(lw, model.log_marginal(x).expand(k, -1).detach(), atol=1e-4, rtol=0)
    for objective in (ImportanceWeighted(k), ImportanceWeighted(k, alpha=0.5), ImportanceWeighted(k, alpha=-1.0)):
        assert bound(objective, model, guide, x) == pytest.approx(model.log_marginal(x).mean().item(), abs=1e-4)


def guide_grads(objective, model, guide, x):
    for p in [*model.parameters(), *guide.parameters()]:
        p.grad = None
    objective.loss_and_grads(model.model, guide.guide, x)
    return {n: p.grad.clone() for n, p in guide.named_parameters()}, {n: p.grad.clone() for n, p in
                                                                        model.named_parameters()}


@pytest.mark.parametrize("k", [1, 5])
def test_stl_and_dreg_guide_gradients_vanish_at_the_exact_posterior_where_iwae_s_do_not(k):
    model, x = data()
    guide = LinearFullGuide(model, exact=True)
    for estimator in ("stl", "dreg"):
        grads, _ = guide_grads(ImportanceWeighted(k, estimator), model, guide, x)
        assert all(g.abs().max() < 1e-4 for g in grads.values()), (estimator, grads)
    plain, _ = guide_grads(ImportanceWeighted(k, "iwae"), model, guide, x)
    assert max(g.abs().max() for g in plain.values()) > 1e-2  # the score term: zero in expectation only


def test_dreg_and_stl_give_iwae_s_model_gradient_and_dreg_its_guide_gradient_in_expectation():
    model, x = data(n=8)
    guide = LinearFullGuide(model, exact=False)
    x = x.repeat(500, 1)  # 500 independent draws of the gradient of 8 examples, in one pass
    k = 5
    pyro.set_rng_seed(0)
    g_iwae, m_iwae = guide_grads(ImportanceWeighted(k, "iwae"), model, guide, x)
    pyro.set_rng_seed(0)
    g_dreg, m_dreg = guide_grads(ImportanceWeighted(k, "dreg"), model, guide, x)
    pyro.set_rng_seed(0)
    _, m_stl = guide_grads(ImportanceWeighted(k, "stl"), model, guide, x)
    for name in m_iwae:  # the model's gradient: the same estimator in all three, the same noise
        torch.testing.assert_close(m_dreg[name], m_iwae[name], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(m_stl[name], m_iwae[name], rtol=1e-4, atol=1e-3)
    # the guide's: other estimators of one expectation; compared over fresh noise, 20 repeats each
    sums = {"iwae": {}, "dreg": {}}
    for name in sums:
        for r in range(20):
            pyro.set_rng_seed(100 + r)
            g, _ = guide_grads(ImportanceWeighted(k, name), model, guide, x)
            for n, v in g.items():
                sums[name][n] = sums[name].get(n, 0) + v / 20
    for n in sums["iwae"]:
        scale = sums["iwae"][n].abs().max().item()
        torch.testing.assert_close(sums["dreg"][n], sums["iwae"][n], atol=0.08 * scale + 0.5, rtol=0.1)


def test_renyi_spans_the_elbo_and_the_iwae_bound_under_the_same_noise():
    model, x = data()
    guide = LinearGuide(model)
    lw = log_weights(model.model, guide.guide, x, num_particles=20).detach()
    iwae, elbo = ImportanceWeighted(20).bound(lw), lw.mean(0)
    torch.testing.assert_close(ImportanceWeighted(20, alpha=0.0).bound(lw), iwae)
    torch.testing.assert_close(ImportanceWeighted(20, alpha=1.0).bound(lw), elbo)
    half = ImportanceWeighted(20, alpha=0.5).bound(lw)
    assert ((elbo <= half + 1e-6) & (half <= iwae + 1e-6)).all()  # monotone in alpha
    assert (ImportanceWeighted(20, alpha=-1.0).bound(lw) >= iwae - 1e-6).all()


def test_pyro_s_renyi_elbo_is_this_per_example_bound_loss_and_gradients():
    """Pyro's ``RenyiELBO`` sums the log densities over the data plate's dependent dimensions only, so
    it is the per-example bound too: ``--objective iwae`` and ``renyi`` train with it."""
    model, x = data(n=50)
    guide = LinearGuide(model)
    for alpha in (0.0, 0.5):
        pyro.set_rng_seed(0)
        ours = guide_grads(ImportanceWeighted(50, alpha=alpha), model, guide, x)
        pyro.set_rng_seed(0)
        pyro_loss = RenyiELBO(alpha=alpha, num_particles=50, vectorize_particles=True, max_plate_nesting=1)
        theirs = guide_grads(pyro_loss, model, guide, x)
        for a, b in zip(ours, theirs):
            for n in a:
                torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-4)
        pyro.set_rng_seed(1)
        value = ImportanceWeighted(50, alpha=alpha).loss(model.model, guide.guide, x)
        pyro.set_rng_seed(1)
        assert pyro_loss.loss(model.model, guide.guide, x) == pytest.approx(value, rel=1e-5)


def test_make_objective_names_and_refusals():
    assert isinstance(make_objective("elbo"), Trace_ELBO)
    assert make_objective("dreg", 5).estimator == "dreg" and make_objective("stl", 5).num_particles == 5
    assert isinstance(make_objective("iwae", 5), RenyiELBO) and make_objective("renyi", 5, alpha=0.3).alpha == 0.3
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        make_objective("nope")
    with pytest.raises(ValueError, match="Rényi bound takes the plain gradient"):
        ImportanceWeighted(5, "dreg", alpha=0.5)


def test_the_vampprior_starts_at_the_images_it_is_given():
    """``start_at``: the pseudo-inputs are the images, kept 0.05 from 0 and 1; other shapes are refused."""
    from ppl_models.priors import VampPrior
    prior = VampPrior(3, 784, components=4)
    images = torch.rand(4, 784)
    images[0, :10], images[1, :10] = 0.0, 1.0
    prior.start_at(images)
    assert torch.allclose(prior.pseudo_inputs(), images.clamp(0.05, 0.95), atol=1e-6)
    with pytest.raises(ValueError, match=r"starts at \(4, 784\) images, got \(3, 784\)"):
        prior.start_at(images[:3])


def test_the_vampprior_density_is_the_explicit_mixture_of_the_guide_s_posteriors():
    from guides.vae import make_guide
    from ppl_models.vae import VAE
    vae = VAE(3, (16,), prior="vamp", prior_components=4)
    guide = make_guide("diag", vae)
    vae.p_z.attach(guide.posterior)
    z = torch.randn(7, 3)
    u = vae.p_z.pseudo_inputs()
    q = guide.head(guide.encoder(u)).base_dist  # q(z | u_k) = N(loc_k, diag scale_k^2), k = 1..4
    parts = torch.stack([torch.distributions.Normal(q.loc[k], q.scale[k]).log_prob(z).sum(-1) for k in range(4)])
    explicit = parts.logsumexp(0) - torch.log(torch.tensor(4.0))
    torch.testing.assert_close(vae.prior(z).log_prob(z), explicit)


def test_the_vampprior_fast_density_has_the_general_mixture_s_values_and_gradients():
    """The diagonal mixture's matrix-product density against ``MixtureSameFamily`` over the same
    components, at z near a component's mean (where the expanded square cancels most) and far away."""
    from ppl_models.priors import EqualDiagonalMixture
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(6, 4, generator=g).requires_grad_()
    scale = (0.01 + torch.rand(6, 4, generator=g)).requires_grad_()
    z = torch.cat([loc.detach()[:2] + 1e-3, 5 * torch.randn(3, 4, generator=g)]).reshape(5, 1, 4)
    general = dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(6)), dist.Normal(loc, scale).to_event(1))
    fast = EqualDiagonalMixture(loc, scale)
    a, b = fast.log_prob(z), general.log_prob(z)
    assert a.shape == b.shape == (5, 1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    for ga, gb in zip(torch.autograd.grad(a.sum(), (loc, scale)), torch.autograd.grad(b.sum(), (loc, scale))):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-4)
    assert fast.sample((7, 2)).shape == (7, 2, 4)


def test_the_mixture_and_flow_priors_are_normalised_densities_on_a_grid():
    from ppl_models.priors import make_prior
    g = torch.linspace(-8, 8, 401)
    zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    cell = (g[1] - g[0]) ** 2
    for kind in ("standard", "mog", "flow"):
        with torch.no_grad():
            mass = (make_prior(kind, 2, 784).forward(zz).log_prob(zz).exp().sum() * cell).item()
        assert mass == pytest.approx(1.0, abs=0.02), kind


def test_the_jit_compiled_elbo_gives_the_eager_loss_and_gradients():
    """Pyro's JitTrace_ELBO against Trace_ELBO on the VAE with the point-mass guide, where the ELBO has
    no noise, so that the two must agree exactly (after compiling); --jit trains with it."""
    import guides.vae
    from ppl_models.vae import VAE
    model = VAE(3, (8,))
    guide = guides.vae.make_guide("delta", model)
    params = list(model.parameters()) + list(guide.parameters())
    x = torch.bernoulli(torch.rand(5, 784, generator=torch.Generator().manual_seed(0)))
    results = []
    for jit in (False, True):
        loss = make_objective("elbo", jit=jit)
        for _ in range(3 if jit else 1):  # the first calls compile
            for p in params:
                p.grad = None
            value = loss.loss_and_grads(model.model, guide.guide, x)
        results.append((value, [p.grad.clone() for p in params]))
    (eager, g_eager), (jitted, g_jit) = results
    assert type(make_objective("elbo", jit=True)).__name__ == "JitTrace_ELBO"
    assert jitted == pytest.approx(eager, rel=1e-6)
    for a, b in zip(g_eager, g_jit):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_jit_compiled_meanfield_elbo_compiles_once():
    """Pyro 1.9's JitTraceMeanField_ELBO builds and compiles its traced loss anew on every call; the
    one --jit trains with keeps the first (one compiled graph for one argument shape)."""
    import guides.vae
    from ppl_models.vae import VAE
    model = VAE(3, (8,))
    guide = guides.vae.make_guide("diag", model)
    x = torch.bernoulli(torch.rand(5, 784, generator=torch.Generator().manual_seed(0)))
    loss = make_objective("meanfield", jit=True)
    built, m, g = [], model.model, guide.guide  # bound once, as fit() does: Pyro keys its graphs on their ids
    for _ in range(3):
        loss.loss_and_grads(m, g, x)
        built.append(loss._differentiable_loss)
    assert built[0] is built[1] is built[2]
    assert len(built[0].compiled) == 1


def test_training_with_jit_compiles_one_graph_for_one_batch_shape(tmp_path):
    """fit() hands Pyro's JIT loss the same model and guide functions every step, so that batches of
    one shape share one compiled graph over all the epochs."""
    import guides.vae
    from ppl_models.inference.train import fit
    from ppl_models.vae import VAE
    model = VAE(3, (8,))
    guide = guides.vae.make_guide("diag", model)
    x = torch.bernoulli(torch.rand(4, 5, 784, generator=torch.Generator().manual_seed(0)))
    loss = make_objective("elbo", jit=True)
    fit(model, guide, loss, [(b,) for b in x], epochs=2, out=tmp_path, progress=False, log=lambda *a: None)
    assert len(loss._loss_and_surrogate_loss.compiled) == 1


def _jit_cases():
    """A tiny model, its guide, its loss (eager or compiled: ``loss(jit)``) and one batch of each story
    that --jit trains (the VAE under both KL estimators, the CVAE, the sequence VAE, DRAW, the VRNN on
    rows, and M2 and the ADGM on an unlabelled and a labelled batch, the label enumerated or observed)."""
    import guides.adgm
    import guides.cvae
    import guides.ssvae
    from pyro.infer import JitTrace_ELBO, JitTraceEnum_ELBO

    from ppl_models.adgm import AuxiliaryDGM
    from ppl_models.ssvae import SSVAE, M2Objective
    import guides.draw
    import guides.seqvae
    import guides.vae
    import guides.vrnn
    from ppl_models.cvae import CVAE, missing_mask, observe
    from ppl_models.draw import DRAW
    from ppl_models.seqvae import CENTRE, SeqVAE
    from ppl_models.vae import VAE
    from ppl_models.vrnn import VRNN
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.rand(5, 784, generator=g))
    vae, cvae, seq, draw, vrnn = VAE(3, (8,)), CVAE(784, 3, (8, 8)), SeqVAE(3, 8, 12), DRAW(3, 3, 8), VRNN(
        "bernoulli", "learned", 3, 8)
    miss = missing_mask(1).expand(5, 784)
    m2, adgm, y = SSVAE(3, (8,)), AuxiliaryDGM(3, 2, (8, 8), form="adgm"), torch.arange(5)
    m2_guide, adgm_guide = guides.ssvae.make_guide("mlp", m2), guides.adgm.make_guide("mlp", adgm)

    def semi(guide):
        return lambda jit: M2Objective(guide.classifier, 50.0, JitTraceEnum_ELBO(max_plate_nesting=1) if jit else None,
                                       JitTrace_ELBO() if jit else None)
    return {"m2-unlabelled": (m2, m2_guide, semi(m2_guide), (x, None)),
            "m2-labelled": (m2, m2_guide, semi(m2_guide), (x, y)),
            "adgm-unlabelled": (adgm, adgm_guide, semi(adgm_guide), (x, None)),
            "adgm-labelled": (adgm, adgm_guide, semi(adgm_guide), (x, y)),
            "vae": (vae, guides.vae.make_guide("diag", vae), "elbo", (x,)),
            "vae-meanfield": (vae, guides.vae.make_guide("diag", vae), "meanfield", (x,)),
            "cvae": (cvae, guides.cvae.make_guide("recognition", cvae), "elbo", (observe(x, miss), x, miss)),
            "seqvae": (seq, guides.seqvae.make_guide("lstm", seq), "elbo",
                       (CENTRE + 5 * torch.randn(5, 12, 2, generator=g),)),
            "draw": (draw, guides.draw.make_guide("draw", draw), "elbo", (x,)),
            "vrnn": (vrnn, guides.vrnn.make_guide("filtering", vrnn), "elbo", (x.reshape(5, 28, 28)[:, :6],))}


@pytest.mark.parametrize("case", ["vae", "vae-meanfield", "cvae", "seqvae", "draw", "vrnn", "m2-unlabelled",
                                  "m2-labelled", "adgm-unlabelled", "adgm-labelled"])
def test_the_jit_compiled_step_gives_the_eager_loss_and_gradients_under_one_seed(case):
    """Pyro's compiled ELBO (--jit) against its eager one on each story --jit trains: once compiled,
    the same random draws (one seed) give the same loss and the same gradient of every parameter."""
    model, guide, objective, batch = _jit_cases()[case]
    params = list({id(p): p for p in [*model.parameters(), *guide.parameters()]}.values())
    m, g = model.model, guide.guide
    results = []
    with pyro.validation_enabled(False):
        for jit in (False, True):
            loss = objective(jit) if callable(objective) else make_objective(objective, jit=jit)
            for _ in range(2 if jit else 1):  # the first call compiles (and draws differently while it does)
                for p in params:
                    p.grad = None
                pyro.set_rng_seed(7)
                value = loss.loss_and_grads(m, g, *batch)
            results.append((torch.tensor(value), [p.grad for p in params]))
    (eager, g_eager), (jitted, g_jit) = results
    torch.testing.assert_close(jitted, eager, rtol=1e-5, atol=1e-3)
    assert sum(a is not None for a in g_eager) == len(params) - sum(a is None for a in g_jit)
    for a, b in zip(g_eager, g_jit):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_jit_applies_to_the_elbos_pyro_compiles_only():
    with pytest.raises(ValueError, match="--jit: Pyro compiles elbo and meanfield only, not --objective dreg"):
        make_objective("dreg", 5, jit=True)
